"""The processes of a fleet (scripts/fleet_stack.py): a PostgreSQL replica, the emulator, app
instances under gunicorn and HAProxy, each on a free port, each in a session of its own so that
stopping or killing one takes all of its processes with it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests

from tests.processes import PostgresCluster, app_environment, free_port, postgres_bin

ROOT = Path(__file__).resolve().parent.parent
# The emulator's own paths (emulator/config.py), spelled out: nothing outside the emulator, the
# tests and the benchmarks imports it (tests/deploy/test_emulator_boundary.py); the fleet test
# keeps them equal.
PUBLIC_KEY_PATH = "/_emulator/callback-public-key.pem"
STATS_PATH = "/_emulator/stats"
HOST = "127.0.0.1"
RETRY_AFTER_SECONDS = 5
# The load balancer's own answer when no instance is healthy: the one error shape, a Retry-After.
_NO_INSTANCE = (
    "HTTP/1.1 503 Service Unavailable\r\n"
    "Content-Type: application/json\r\n"
    f"Retry-After: {RETRY_AFTER_SECONDS}\r\n"
    "Cache-Control: no-store\r\n"
    "Connection: close\r\n"
    "\r\n"
    '{"error": {"code": "service_unavailable", '
    '"message": "No app server can answer now. Retry later."}}\n'
)


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not happen within {timeout:.0f} s")


def status_of(url: str) -> int | None:
    try:
        return requests.get(url, timeout=2).status_code
    except requests.RequestException:
        return None


class PostgresReplica:
    """A hot standby of `primary`: pg_basebackup -R (streaming replication, standby.signal)."""

    def __init__(self, primary: PostgresCluster) -> None:
        self.port = free_port()
        self.url = f"postgres://postgres@{HOST}:{self.port}/postgres"
        self.directory = Path(tempfile.mkdtemp(prefix="appserver-pg-replica-"))
        self._as_user: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            self._as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.directory, "postgres", "postgres")
        self.data = self.directory / "data"
        self._run(
            postgres_bin("pg_basebackup"),
            *("-h", HOST, "-p", str(primary.port), "-U", "postgres", "-D", str(self.data)),
            *("-R", "-X", "stream", "--no-sync"),
        )
        options = (
            f"-p {self.port} -c listen_addresses={HOST} -c unix_socket_directories="
            f"{self.directory} -c fsync=off -c hot_standby=on"
        )
        self._run(
            postgres_bin("pg_ctl"),
            *("-D", str(self.data), "-o", options, "-l", str(self.directory / "log"), "-w"),
            "start",
        )

    def _run(self, *argv: str) -> None:
        subprocess.run(  # noqa: S603 - fixed argv built here
            [*self._as_user, *argv], check=True, capture_output=True, cwd=self.directory
        )

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(postgres_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)


class EmulatorProcess:
    """`python -m emulator` in memory on a free port."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://{HOST}:{self.port}"
        self._log = log.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv built here
            [sys.executable, "-m", "emulator", "--memory", f"--host={HOST}", f"--port={self.port}"],
            cwd=ROOT,
            env=app_environment(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        key_url = self.endpoint + PUBLIC_KEY_PATH
        wait_until(lambda: status_of(key_url) == 200, "the emulator answering")

    def assume_role_calls(self) -> int:
        """AssumeRole requests the emulator has received, from every instance."""
        return requests.get(self.endpoint + STATS_PATH, timeout=5).json()["assume_role_calls"]

    def close(self) -> None:
        stop_group(self.process, signal.SIGTERM)
        self._log.close()


def stop_group(process: subprocess.Popen, sig: int, timeout: float = 20) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


class Instance:
    """One app server: gunicorn (its master and workers in a session of their own)."""

    def __init__(self, name: str, env: dict[str, str], log: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.env = dict(env, INSTANCE_ID=name, GUNICORN_BIND=f"{HOST}:{self.port}")
        self.log_path = log
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - fixed argv built here
                [gunicorn, "-c", str(ROOT / "gunicorn.conf.py"), "appserver.wsgi"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(self._healthy, f"instance {self.name} answering", timeout=90)

    def _healthy(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"instance {self.name} exited:\n{self.log()[-3000:]}")
        return status_of(self.url + "/healthz") == 200

    def kill(self) -> None:
        """SIGKILL to the master and every worker at once: requests in flight are cut."""
        assert self.process is not None
        stop_group(self.process, signal.SIGKILL)

    def stop(self) -> None:
        """Gunicorn's graceful stop: it stops accepting and finishes the requests in flight."""
        if self.process is not None:
            stop_group(self.process, signal.SIGTERM)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class LoadBalancer:
    """HAProxy in the foreground (-db) with a generated configuration."""

    def __init__(self, port: int, instances: list[Instance], directory: Path) -> None:
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.stats_port = free_port()
        self.stats_url = f"http://{HOST}:{self.stats_port}/"
        self.socket = directory / "haproxy.sock"
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(haproxy).exists():
            raise RuntimeError("haproxy not found: apt-get install -y haproxy")
        (directory / "haproxy-503.http").write_text(_NO_INSTANCE)
        config = directory / "haproxy.cfg"
        config.write_text(self.config(instances, directory))
        self._log = (directory / "haproxy.log").open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv built here
            [haproxy, "-db", "-f", str(config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(lambda: status_of(self.url + "/healthz") == 200, "HAProxy answering")

    def config(self, instances: list[Instance], directory: Path) -> str:
        servers = "\n".join(
            f"    server {i.name} {HOST}:{i.port} check" for i in instances
        )  # fmt: skip
        return f"""global
    maxconn 4096
    # The runtime API: `set server instances/<name> state maint|ready` (the benchmark).
    stats socket {self.socket} mode 600 level admin

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout check 2s
    # A request whose connection failed was never seen by an instance: another one takes it.
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response
    errorfile 503 {directory / "haproxy-503.http"}

frontend app
    bind {HOST}:{self.port}
    option forwardfor
    default_backend instances

backend instances
    balance roundrobin
    # An instance that closed without answering may have done the work: only reads are retried.
    http-request disable-l7-retry if !METH_GET !METH_HEAD
    option httpchk GET /healthz
    http-check expect status 200
    default-server inter 500ms fall 2 rise 1
    http-response set-header X-Served-By %[srv_name]
{servers}

listen stats
    bind {HOST}:{self.stats_port}
    stats enable
    stats uri /
    stats refresh 2s
"""

    def _stats(self, server: str) -> dict[str, str]:
        text = requests.get(self.stats_url + ";csv", timeout=2).text
        header, *rows = text.lstrip("# ").splitlines()
        columns = header.split(",")
        for row in rows:
            values = dict(zip(columns, row.split(","), strict=False))
            if values["pxname"] == "instances" and values["svname"] == server:
                return values
        raise KeyError(server)

    def sessions(self, server: str) -> int:
        """Requests the load balancer has in flight at `server` now."""
        return int(self._stats(server)["scur"] or 0)

    def status(self, server: str) -> str:
        """What the health checks make of `server`: "UP", "DOWN", or a transition."""
        return self._stats(server)["status"]

    def command(self, line: str) -> str:
        """One command on HAProxy's runtime API; returns its answer."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(self.socket))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def set_state(self, server: str, state: str) -> None:
        """ "maint" takes `server` out of rotation (its connections finish), "ready" back."""
        answer = self.command(f"set server instances/{server} state {state}")
        if answer.strip():
            raise RuntimeError(f"haproxy: {answer.strip()}")

    def close(self) -> None:
        stop_group(self.process, signal.SIGTERM)
        self._log.close()
