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
import queue
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scripts.fleet_parts import (
    HOST,
    ROOT,
    EmulatorProcess,
    Instance,
    LoadBalancer,
    PostgresReplica,
    status_of,
    wait_until,
)
from tests.processes import PostgresCluster, RedisServer, app_environment, free_port

__all__ = ["Fleet", "wait_until"]

# The loop of the fleet's Django shell (Fleet.python): a script and its payload per line in, a
# result per line out. A backing service may have been restarted since the last call, so no
# database or Redis connection is reused from one call to the next.
_SHELL = """
import json, sys, traceback
from django.core.cache import caches
from django.db import connections
for line in sys.stdin:
    connections.close_all()
    for cache in caches.all(initialized_only=True):
        for pool in getattr(getattr(cache, "_cache", None), "_pools", {}).values():
            pool.disconnect()
    request = json.loads(line)
    scope = {"payload": request["payload"], "result": None}
    try:
        exec(request["script"], scope)
        answer = {"result": scope["result"]}
    except Exception:
        answer = {"error": traceback.format_exc()}
    sys.stdout.write("FLEET-RESULT " + json.dumps(answer, default=str) + "\\n")
    sys.stdout.flush()
"""


def _read_answers(stream, answers: queue.Queue) -> None:
    """The shell's answers as they come (None once it has exited)."""
    for line in stream:
        if line.startswith("FLEET-RESULT "):
            answers.put(json.loads(line.removeprefix("FLEET-RESULT ")))
    answers.put(None)


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
    _shell: subprocess.Popen | None = field(default=None, repr=False)
    _answers: queue.Queue = field(default_factory=queue.Queue, repr=False)

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
                # Reports read from the replica, as in production.
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

    def python(self, script: str, payload: object = None, timeout: float = 180) -> object:
        """Run `script` in Django against the fleet (`payload` is its `payload`); it sets
        `result`, which comes back through JSON. One Django process serves every call (a start
        costs seconds of CPU) and is started again if it has gone; one that gives no answer in
        `timeout` seconds is killed, so a stuck script fails its caller instead of hanging it."""
        if self._shell is None or self._shell.poll() is not None:
            with (self.directory / "shell.log").open("a") as log:
                self._shell = subprocess.Popen(  # noqa: S603 - fixed argv built here
                    [sys.executable, "manage.py", "shell", "--no-imports", "-c", _SHELL],
                    cwd=ROOT,
                    env=self.env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    text=True,
                )
            self._answers = queue.Queue()
            threading.Thread(
                target=_read_answers, args=(self._shell.stdout, self._answers), daemon=True
            ).start()
        assert self._shell.stdin is not None
        self._shell.stdin.write(json.dumps({"script": script, "payload": payload}) + "\n")
        self._shell.stdin.flush()
        log_path = self.directory / "shell.log"
        try:
            answer = self._answers.get(timeout=timeout)
        except queue.Empty:
            self._shell.kill()
            self._shell.wait()
            self._shell = None  # the next call starts another
            raise RuntimeError(f"The fleet's Django shell gave no answer: see {log_path}") from None
        if answer is None:
            raise RuntimeError(f"The fleet's Django shell exited: see {log_path}")
        if "error" in answer:
            raise RuntimeError(f"The script failed in the fleet's Django shell:\n{answer['error']}")
        return answer["result"]

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
            wait_until(lambda u=url: status_of(u + "/healthz") == 200, f"{url} healthy", timeout)

    def close(self) -> None:
        if self._shell is not None:
            with contextlib.suppress(Exception):
                self._shell.stdin.close()  # end of input ends its loop
                self._shell.wait(timeout=10)
            if self._shell.poll() is None:
                self._shell.kill()
                self._shell.wait()
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
