"""`make run`: the whole system on the embedded default, in one terminal.

Migrates the SQLite database, creates a demo user and an admin (once; their generated passwords
are kept in var/demo-credentials.json so every later run prints the same ones), starts the local
STS/OSS emulator (objects in var/emulator) and the app server under gunicorn, waits until both
answer, and prints the URLs and a walk-through. Ctrl-C (or SIGTERM) stops both; they also die
with this process if it is killed outright, so nothing is left running.

Ports: APP_PORT (default 8000) and EMULATOR_PORT (default 9100); the app's settings are pointed
at whatever is chosen.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Local state (database, objects, demo passwords); RUN_VAR_DIR moves it (the tests use that).
VAR = Path(os.environ.get("RUN_VAR_DIR") or ROOT / "var").resolve()
CREDENTIALS_FILE = VAR / "demo-credentials.json"
DEMO_USERNAME = "demo"
ADMIN_USERNAME = "admin"
HOST = "127.0.0.1"


def _log(message: str) -> None:
    print(f"[make run] {message}", flush=True)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _port(name: str, value: str) -> int:
    raw = value.strip()
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"{name} must be a port number (1-65535), not {raw!r}.")
    return int(raw)


def _die_with_parent() -> None:
    # Linux: the child gets SIGTERM if this supervisor dies, even by SIGKILL, so a killed
    # `make run` leaves no orphans. Elsewhere the signal handlers below are the only guard.
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _start(name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    _log(f"starting {name}: {' '.join(argv)}")
    # A session of its own: Ctrl-C reaches only this supervisor, which then stops each child
    # in order and waits for it, instead of every process racing to exit at once.
    return subprocess.Popen(  # noqa: S603 - fixed argv built here
        argv, cwd=ROOT, env=env, start_new_session=True, preexec_fn=_die_with_parent
    )


def _wait_http(url: str, process: subprocess.Popen, name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with status {process.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - local URL
                if response.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{name} did not answer at {url} within {timeout:.0f} s")


def _stop(processes: list[tuple[str, subprocess.Popen]]) -> None:
    # The app first (it may still be answering a callback), then the emulator.
    for name, process in reversed(processes):
        if process.poll() is not None:
            continue
        _log(f"stopping {name} (pid {process.pid}) ...")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            _log(f"{name} did not stop in 15 s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def _load_or_create_passwords() -> dict[str, dict[str, str]]:
    if CREDENTIALS_FILE.is_file():
        stored = json.loads(CREDENTIALS_FILE.read_text())
        if {"demo", "admin"} <= stored.keys():
            return stored
    stored = {
        "demo": {"username": DEMO_USERNAME, "password": secrets.token_urlsafe(12)},
        "admin": {"username": ADMIN_USERNAME, "password": secrets.token_urlsafe(12)},
    }
    VAR.mkdir(exist_ok=True)
    CREDENTIALS_FILE.write_text(json.dumps(stored, indent=2) + "\n")
    CREDENTIALS_FILE.chmod(0o600)
    return stored


def _prepare_database(env: dict[str, str]) -> dict[str, dict[str, str]]:
    """Migrate, then make sure the demo user and the admin exist with the stored passwords."""
    python = sys.executable
    _log("migrating the database ...")
    subprocess.run(  # noqa: S603
        [python, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    accounts = _load_or_create_passwords()
    # Setting the stored password every time keeps a second run working even if the database
    # was deleted and recreated, or someone changed the password in the admin.
    script = """
import json, sys
from django.contrib.auth import get_user_model
accounts = json.loads(sys.stdin.read())
User = get_user_model()
for role, staff in (("demo", False), ("admin", True)):
    entry = accounts[role]
    user, created = User.objects.get_or_create(username=entry["username"])
    user.is_staff = user.is_superuser = staff
    user.is_active = True
    user.email = user.email or f"{entry['username']}@example.com"
    user.set_password(entry["password"])
    user.save()
    print(("created " if created else "found ") + role + " user " + entry["username"])
"""
    result = subprocess.run(  # noqa: S603
        [python, "manage.py", "shell", "--no-imports", "-c", script],
        cwd=ROOT,
        env=env,
        input=json.dumps(accounts),
        text=True,
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        raise RuntimeError("could not create the demo users")
    for line in result.stdout.split("\n"):
        if line.strip():
            _log(line.strip())
    return accounts


def _banner(app: str, accounts: dict[str, dict[str, str]], emulator: str) -> str:
    demo, admin = accounts["demo"], accounts["admin"]
    login_body = json.dumps({"username": demo["username"], "password": demo["password"]})
    ticket_body = json.dumps(
        {"filename": "hello.txt", "size": 12, "content_type": "text/plain"}, separators=(",", ":")
    )
    return f"""
========================================================================================
 The app server and the local Alibaba Cloud emulator are running.

   Upload page  {app}/upload/
   API docs     {app}/api/docs/
   Admin        {app}/admin/
   Health       {app}/healthz
   Metrics      {app}/metrics   (Prometheus; readable from this machine only)
   Emulator     {emulator}   (STS + OSS; objects kept in {VAR / "emulator"})

   Demo user    {demo["username"]} / {demo["password"]}
   Admin        {admin["username"]} / {admin["password"]}
   (passwords kept in {CREDENTIALS_FILE}; delete that file for new ones)

 Walk-through (another terminal):

   TOKEN=$(curl -s -X POST {app}/api/auth/login/ -H 'Content-Type: application/json' \\
     -d '{login_body}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access"])')
   curl -s -H "Authorization: Bearer $TOKEN" '{app}/api/sts/credentials/?scope=readwrite'
   curl -s -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
     {app}/api/uploads/tickets/ -d '{ticket_body}'
   curl -s -H "Authorization: Bearer $TOKEN" {app}/api/uploads/

   make demo        # the mobile app's whole flow with oss2: upload, callback, list, download

 Ctrl-C stops both servers.
========================================================================================
"""


def main() -> int:
    try:
        app_port = _port("APP_PORT", os.environ.get("APP_PORT", "8000"))
        emulator_port = _port("EMULATOR_PORT", os.environ.get("EMULATOR_PORT", "9100"))
    except ValueError as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 1
    app = f"http://{HOST}:{app_port}"
    emulator = f"http://{HOST}:{emulator_port}"
    busy = [p for p in (app_port, emulator_port) if not _port_free(p)]
    if busy:
        print(
            f"Port(s) {', '.join(map(str, busy))} on {HOST} are in use. Stop what is using them "
            "(another `make run`?) or choose others: APP_PORT=8001 EMULATOR_PORT=9101 make run",
            file=sys.stderr,
        )
        return 1

    env = dict(os.environ)
    env.setdefault("APP_ENV", "local")
    if os.environ.get("RUN_VAR_DIR"):
        # The settings' own default is var/db.sqlite3; follow the moved folder unless told.
        env.setdefault("DATABASE_URL", f"sqlite:///{VAR / 'db.sqlite3'}")
    env["PYTHONUNBUFFERED"] = "1"
    # Point the app at the emulator and the emulator's callbacks at the app, on the ports chosen.
    env.setdefault("STS_ENDPOINT", emulator)
    env.setdefault("OSS_ENDPOINT", emulator)
    env.setdefault("OSS_PUBLIC_ENDPOINT", env["OSS_ENDPOINT"])
    env.setdefault("OSS_CALLBACK_URL", f"{app}/api/oss/callback/")
    env.setdefault("OSS_CALLBACK_KEY_URL_PREFIXES", f"{emulator}/_emulator/")
    VAR.mkdir(exist_ok=True)

    try:
        accounts = _prepare_database(env)
    except (subprocess.CalledProcessError, RuntimeError) as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 1

    processes: list[tuple[str, subprocess.Popen]] = []
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = signum != signal.SIGINT  # Ctrl-C reads "stopping", the others "asked to"
        raise KeyboardInterrupt

    # SIGINT explicitly too: `make run &` from a script starts this with SIGINT ignored, and
    # Python then installs no Ctrl-C handler of its own.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        emulator_process = _start(
            "the emulator",
            [
                sys.executable,
                "-m",
                "emulator",
                "--host",
                HOST,
                "--port",
                str(emulator_port),
                "--data-dir",
                str(VAR / "emulator"),
            ],
            env,
        )
        processes.append(("the emulator", emulator_process))
        _wait_http(f"{emulator}/_emulator/callback-public-key.pem", emulator_process, "emulator")

        app_env = dict(env, GUNICORN_BIND=f"{HOST}:{app_port}")
        # One worker with threads: the embedded default's cache is per process, so one process
        # keeps credential reuse and throttles coherent.
        app_env.setdefault("GUNICORN_WORKERS", "1")
        app_env.setdefault("GUNICORN_THREADS", "8")
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        app_process = _start(
            "the app server",
            [gunicorn, "-c", str(ROOT / "gunicorn.conf.py"), "appserver.wsgi"],
            app_env,
        )
        processes.append(("the app server", app_process))
        _wait_http(f"{app}/healthz", app_process, "app server")
        print(_banner(app, accounts, emulator), flush=True)

        while True:
            for name, process in processes:
                if process.poll() is not None:
                    _log(f"{name} exited with status {process.returncode}; stopping the rest")
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        _log("stopping ..." if not stopping else "asked to stop ...")
        return 0
    except RuntimeError as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        _stop(processes)
        _log("stopped.")


if __name__ == "__main__":
    sys.exit(main())
