"""A fleet on one machine: app instances under gunicorn behind HAProxy, in front of a PostgreSQL
primary and its streaming replica, a redis-server and the STS/OSS emulator, each started here on
free ports, with every file in one temporary folder.

`make fleet` (scripts/fleet.py), the fleet's tests (tests/deploy/test_fleet.py) and
bench/fleet_bench.py start it through `Fleet.start`. Nothing shared is touched: the PostgreSQL
cluster and the redis-server are the fleet's own, so a test may kill and restart them.

Why each part is as it is:

- Instances get the same environment (one SECRET_KEY: a token minted by one is honoured by the
  other) except INSTANCE_ID; each runs in a session of its own so `kill()` takes its master and
  workers down together, as a machine that dies does.
- HAProxy (Debian's package) checks /healthz every half second and retries a request only when
  the connection to an instance failed before anything was sent (always safe), or, for GET and
  HEAD, when an instance closed without answering. When no instance is healthy it answers 503
  with Retry-After in the project's error shape (haproxy-503.http), like the instances do.
- The emulator runs in a process of its own; its AssumeRole count is read over HTTP
  (/_emulator/stats), so the count covers the whole fleet.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from emulator.config import PUBLIC_KEY_PATH, STATS_PATH
from tests.processes import PostgresCluster, RedisServer, _postgres_bin, app_environment, free_port

ROOT = Path(__file__).resolve().parent.parent
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


def _status(url: str) -> int | None:
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
            _postgres_bin("pg_basebackup"),
            *("-h", HOST, "-p", str(primary.port), "-U", "postgres", "-D", str(self.data)),
            *("-R", "-X", "stream", "--no-sync"),
        )
        options = (
            f"-p {self.port} -c listen_addresses={HOST} -c unix_socket_directories="
            f"{self.directory} -c fsync=off -c hot_standby=on"
        )
        self._run(
            _postgres_bin("pg_ctl"),
            *("-D", str(self.data), "-o", options, "-l", str(self.directory / "log"), "-w"),
            "start",
        )

    def _run(self, *argv: str) -> None:
        subprocess.run(  # noqa: S603 - fixed argv built here
            [*self._as_user, *argv], check=True, capture_output=True, cwd=self.directory
        )

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(_postgres_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
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
        wait_until(lambda: _status(key_url) == 200, "the emulator answering")

    def assume_role_calls(self) -> int:
        """AssumeRole requests the emulator has received, from every instance."""
        return requests.get(self.endpoint + STATS_PATH, timeout=5).json()["assume_role_calls"]

    def close(self) -> None:
        _stop_group(self.process, signal.SIGTERM)
        self._log.close()


def _stop_group(process: subprocess.Popen, sig: int, timeout: float = 20) -> None:
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
        return _status(self.url + "/healthz") == 200

    def kill(self) -> None:
        """SIGKILL to the master and every worker at once: requests in flight are cut."""
        assert self.process is not None
        _stop_group(self.process, signal.SIGKILL)

    def stop(self) -> None:
        """Gunicorn's graceful stop: it stops accepting and finishes the requests in flight."""
        if self.process is not None:
            _stop_group(self.process, signal.SIGTERM)

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
        wait_until(lambda: _status(self.url + "/healthz") == 200, "HAProxy answering")

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
        _stop_group(self.process, signal.SIGTERM)
        self._log.close()


@dataclass
class Fleet:
    directory: Path
    redis: RedisServer
    primary: PostgresCluster
    replica: PostgresReplica
    emulator: EmulatorProcess
    env: dict[str, str]
    instances: list[Instance] = field(default_factory=list)
    balancer: LoadBalancer | None = None

    @classmethod
    def start(
        cls,
        *,
        instances: int = 2,
        workers: int = 2,
        threads: int = 4,
        env: dict[str, str] | None = None,
        say: Callable[[str], None] = lambda _: None,
    ) -> Fleet:
        directory = Path(tempfile.mkdtemp(prefix="appserver-fleet-"))
        parts: list = []
        try:
            say("starting redis-server, PostgreSQL and its replica, the emulator ...")
            redis = RedisServer()
            parts.append(redis)
            primary = PostgresCluster()
            parts.append(primary)
            replica = PostgresReplica(primary)
            parts.append(replica)
            emulator = EmulatorProcess(directory / "emulator.log")
            parts.append(emulator)
            lb_port = free_port()
            templates = directory / "policies"
            shutil.copytree(ROOT / "policies" / "templates", templates)
            base = app_environment(
                SECRET_KEY=secrets.token_urlsafe(50),
                DATABASE_URL=primary.url,
                # Reports read from the replica where the app supports it (#13 item 5).
                REPORTS_DATABASE_URL=replica.url,
                REDIS_URL=redis.url,
                STS_ENDPOINT=emulator.endpoint,
                OSS_ENDPOINT=emulator.endpoint,
                OSS_PUBLIC_ENDPOINT=emulator.endpoint,
                # OSS calls back through the load balancer, as it would in production.
                OSS_CALLBACK_URL=f"http://{HOST}:{lb_port}/api/oss/callback/",
                OSS_CALLBACK_KEY_URL_PREFIXES=emulator.endpoint + "/_emulator/",
                POLICY_TEMPLATES_DIR=str(templates),
                GUNICORN_WORKERS=str(workers),
                GUNICORN_THREADS=str(threads),
                GUNICORN_ACCESS_LOG="",
                **(env or {}),
            )
            fleet = cls(directory, redis, primary, replica, emulator, base)
            parts = []  # from here fleet.close() cleans up
        except BaseException:
            for part in reversed(parts):
                with contextlib.suppress(Exception):
                    (part.stop if isinstance(part, RedisServer) else part.close)()
            shutil.rmtree(directory, ignore_errors=True)
            raise
        try:
            say("migrating ...")
            fleet.manage("migrate", "--noinput", "-v", "0")
            for number in range(instances):
                name = chr(ord("a") + number)
                instance = Instance(name, base, directory / f"instance-{name}.log")
                say(f"starting instance {name} ({workers} workers) ...")
                instance.start()
                fleet.instances.append(instance)
            fleet.balancer = LoadBalancer(lb_port, fleet.instances, directory)
        except BaseException:
            fleet.close()
            raise
        return fleet

    @property
    def url(self) -> str:
        assert self.balancer is not None
        return self.balancer.url

    def instance(self, name: str) -> Instance:
        return next(i for i in self.instances if i.name == name)

    def manage(self, *args: str, stdin: str | None = None) -> str:
        """`manage.py <args>` against the fleet's database and Redis; returns its stdout."""
        result = subprocess.run(  # noqa: S603 - fixed argv built here
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return result.stdout

    def python(self, script: str, payload: object = None) -> object:
        """Run `script` in Django against the fleet (`payload` is its `payload`); it sets
        `result`, which comes back through JSON."""
        wrapper = (
            "import json, sys\npayload = json.loads(sys.stdin.read())\nresult = None\n"
            + script
            + "\nprint('FLEET-RESULT ' + json.dumps(result, default=str))\n"
        )
        out = self.manage("shell", "--no-imports", "-c", wrapper, stdin=json.dumps(payload))
        line = next(x for x in out.splitlines() if x.startswith("FLEET-RESULT "))
        return json.loads(line.removeprefix("FLEET-RESULT "))

    def users(self, prefix: str, count: int) -> list[dict]:
        """`count` new users with an access token each:
        [{pk, username, public_id, password, access}]."""
        script = """
from django.contrib.auth import get_user_model
from accounts.services import session_start
result = []
for number in range(payload["count"]):
    user = get_user_model().objects.create_user(
        username=f"{payload['prefix']}{number}", password=payload["password"]
    )
    result.append({
        "pk": user.pk, "username": user.username, "public_id": str(user.public_id),
        "password": payload["password"], "access": session_start(user=user)["access"],
    })
"""
        payload = {"prefix": prefix, "count": count, "password": secrets.token_urlsafe(16)}
        return self.python(script, payload)  # type: ignore[return-value]

    def wait_healthy(self, timeout: float = 60) -> None:
        """Every instance and the load balancer answer /healthz with 200."""
        for url in [i.url for i in self.instances] + [self.url]:
            wait_until(lambda u=url: _status(u + "/healthz") == 200, f"{url} healthy", timeout)

    def close(self) -> None:
        if self.balancer is not None:
            self.balancer.close()
        for instance in self.instances:
            instance.stop()
        for close in (self.emulator.close, self.replica.close, self.primary.close):
            with contextlib.suppress(Exception):
                close()
        with contextlib.suppress(Exception):
            self.redis.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
