"""Real servers a test starts, stops and restarts itself, on free ports: a redis-server, a
PostgreSQL cluster and the app under gunicorn. Tests that take a backing service down use these,
never the shared PostgreSQL and Redis the rest of the suite runs against."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(predicate, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s")


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class RedisServer:
    """A throwaway redis-server (no persistence); stop() and start() keep its port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
        )
        _wait(lambda: _accepts(self.port), f"redis-server on port {self.port} accepting")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # as a crash does: no goodbye to the clients
            self.process.wait(timeout=10)
        _wait(lambda: not _accepts(self.port), f"redis-server on port {self.port} gone")


def postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name)]
    if not found[-1]:
        raise AssertionError(f"{name} not found: install PostgreSQL's server binaries")
    return found[-1]


class PostgresCluster:
    """A throwaway PostgreSQL cluster (initdb in a temporary folder, trust on 127.0.0.1).

    PostgreSQL refuses to run as root: then it runs as the `postgres` user.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"
        self.directory = Path(tempfile.mkdtemp(prefix="appserver-pg-"))
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            self._as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.directory, "postgres", "postgres")
        self.data = self.directory / "data"
        self._run(
            postgres_bin("initdb"),
            *("-D", str(self.data), "-U", "postgres", "-A", "trust"),
            "--no-sync",
            "--no-instructions",
        )
        self.start()

    def _run(self, *argv: str) -> None:
        subprocess.run([*self._as_user, *argv], check=True, capture_output=True, cwd=self.directory)

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories="
            f"{self.directory} -c fsync=off -c full_page_writes=off"
        )
        self._run(
            postgres_bin("pg_ctl"),
            *("-D", str(self.data), "-o", options, "-l", str(self.directory / "log"), "-w"),
            "start",
        )

    def stop(self) -> None:
        # Immediate: the server goes away as in a crash, dropping every connection at once.
        self._run(postgres_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        _wait(lambda: not _accepts(self.port), f"PostgreSQL on port {self.port} gone")

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def run_manage(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess:
    """`manage.py <args>` in a process of its own, with only the variables given (and PATH):
    nothing from the developer's shell or the test run leaks in."""
    clean = {"PATH": os.environ.get("PATH", ""), **env}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def database_url(connection) -> str:
    """A DATABASE_URL for the database `connection` uses (the test database, during tests), so
    a command in another process sees what a `transaction=True` test committed."""
    conf = connection.settings_dict
    password = f":{quote(conf['PASSWORD'], safe='')}" if conf["PASSWORD"] else ""
    return (
        f"postgres://{quote(conf['USER'], safe='')}{password}@{conf['HOST'] or '127.0.0.1'}:"
        f"{conf['PORT'] or 5432}/{conf['NAME']}"
    )


def app_environment(**overrides: str) -> dict[str, str]:
    """The environment of an app process: this one's, without the test run's own settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "PYTEST", "DATABASE_URL", "REDIS_URL"))
    }
    env.update(APP_ENV="local", PYTHONUNBUFFERED="1", **overrides)
    return env


class AppServer:
    """The app under gunicorn (one worker, threads), migrated first, as `make run` starts it."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(env, GUNICORN_BIND=f"127.0.0.1:{self.port}")
        # Tickets name the app's own callback URL, on the port chosen here.
        self.env.setdefault("OSS_CALLBACK_URL", self.url + "/api/oss/callback/")
        self.env.setdefault("GUNICORN_WORKERS", "1")
        self.env.setdefault("GUNICORN_THREADS", "8")
        self.env.setdefault("GUNICORN_ACCESS_LOG", "")
        self.log_path = log
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=self.env,
            check=True,
        )
        self._log = log.open("w")
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        self.process = subprocess.Popen(
            [gunicorn, "-c", str(ROOT / "gunicorn.conf.py"), "appserver.wsgi"],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        _wait(self._answers, f"the app server on port {self.port} answering", timeout=60)

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"gunicorn exited:\n{self.log()}")
        try:
            return requests.get(self.url + "/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def log(self) -> str:
        return self.log_path.read_text()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()
