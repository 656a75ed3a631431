"""`make run`'s supervisor for real: it starts the emulator and gunicorn, `make demo`'s client
completes the whole flow against them, Ctrl-C stops everything it started, a second run reuses
the database and the demo user, and a supervisor killed outright leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from scripts.demo_client import demo_png, run_demo
from tests.metrics.conftest import scrape
from tests.processes import free_port
from tests.webclient.conftest import headless_chromium

ROOT = Path(__file__).resolve().parents[2]
BANNER_END = "Ctrl-C stops both servers."


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Supervisor:
    def __init__(self, var_dir: Path, app_port: int, emulator_port: int) -> None:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("DJANGO_", "PYTEST", "DATABASE_URL", "REDIS_URL"))
        }
        env.update(
            RUN_VAR_DIR=str(var_dir),
            APP_PORT=str(app_port),
            EMULATOR_PORT=str(emulator_port),
            APP_ENV="local",
        )
        self.process = subprocess.Popen(
            [sys.executable, "scripts/run_local.py"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            # As `make run &` in a script starts it: a background job inherits SIGINT ignored,
            # and the supervisor must still stop on Ctrl-C's signal.
            preexec_fn=_ignore_sigint,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_banner(self, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(BANNER_END in line for line in self.lines):
                return self.output()
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        self.kill()
        pytest.fail(f"make run did not come up:\n{self.output()}")

    def child_groups(self) -> list[int]:
        # Each child leads its own process group (gunicorn's workers are in its group).
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited meanwhile
            if int(fields[1]) == self.process.pid:  # fields: state, ppid, pgrp, ...
                children.append(int(stat.parent.name))
        return sorted(children)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def _parallel_tickets(base_url: str, password: str, *, count: int) -> list[int]:
    """What the upload page does with several files: ticket requests at the same moment, each
    writing the user's quota row on the embedded SQLite."""
    login = requests.post(
        f"{base_url}/api/auth/login/", json={"username": "demo", "password": password}, timeout=15
    )
    headers = {"Authorization": f"Bearer {login.json()['access']}"}

    def ticket(n: int) -> int:
        body = {"filename": f"parallel{n}.txt", "size": 10, "content_type": "text/plain"}
        url = f"{base_url}/api/uploads/tickets/"
        return requests.post(url, json=body, headers=headers, timeout=30).status_code

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(ticket, range(count)))


def _browser_uploads(page_url: str, password: str, files: list[Path], chromium: str) -> list:
    """The upload page on `make run`: log in as the demo user and pick several files at once
    (the page uploads them in parallel). Returns each progress row's class and percentage."""
    with headless_chromium(chromium) as browser:
        page = browser.new_page()
        page.goto(page_url)
        page.fill("#login-username", "demo")
        page.fill("#login-password", password)
        page.click("#login-submit")
        page.wait_for_selector("#upload-section:not([hidden])", timeout=10_000)
        page.set_input_files("#file-input", [str(path) for path in files])
        page.wait_for_function(
            # A function, not an expression: the page's CSP forbids the eval() of one.
            f"() => document.querySelectorAll('#progress-list li.done, #progress-list li.failed')"
            f".length === {len(files)}",
            timeout=60_000,
        )
        rows = page.eval_on_selector_all(
            "#progress-list li",
            "rows => rows.map(r => [r.className, r.dataset.percent, r.dataset.code ?? ''])",
        )
        page.close()
    return rows


SIGNED_DATA = b"uploaded without credentials"


def _signed_upload(base_url: str, password: str, mode: str) -> dict:
    """A url or form ticket used as an app without credentials would: plain HTTP."""
    tokens = requests.post(
        f"{base_url}/api/auth/login/",
        json={"username": "demo", "password": password},
        timeout=10,
    ).json()
    ticket = requests.post(
        f"{base_url}/api/uploads/tickets/",
        json={
            "filename": f"{mode}.txt",
            "size": len(SIGNED_DATA),
            "content_type": "text/plain",
            "mode": mode,
        },
        headers={"Authorization": f"Bearer {tokens['access']}"},
        timeout=10,
    ).json()
    upload = ticket["upload"]
    if mode == "url":
        response = requests.put(
            upload["url"], data=SIGNED_DATA, headers=upload["headers"], timeout=10
        )
    else:
        response = requests.post(
            upload["url"],
            data=upload["fields"],
            files={upload["file_field"]: ("f.txt", SIGNED_DATA, "text/plain")},
            timeout=10,
        )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.slow(25)
def test_make_run_serves_the_demo_stops_cleanly_and_reuses_its_state(tmp_path, chromium_path):
    app_port, emulator_port = free_port(), free_port()
    base_url = f"http://127.0.0.1:{app_port}"

    first = Supervisor(tmp_path, app_port, emulator_port)
    try:
        banner = first.wait_for_banner()
        password = re.search(r"Demo user {4}demo / (\S+)", banner).group(1)
        admin_password = re.search(r"Admin {8}admin / (\S+)", banner).group(1)
        assert f"Upload page  {base_url}/upload/" in banner
        assert f"API docs     {base_url}/api/docs/" in banner
        assert f"Admin        {base_url}/admin/" in banner
        assert "created demo user demo" in banner
        assert "created admin user admin" in banner
        groups = first.child_groups()
        assert len(groups) == 2

        result = run_demo(base_url=base_url, username="demo", password=password, say=lambda _: None)
        assert result.downloaded == result.uploaded
        assert _parallel_tickets(base_url, password, count=10) == [201] * 10
        # What happened so far, as Prometheus reads it from the one gunicorn worker.
        assert f"Metrics      {base_url}/metrics" in banner
        scraped = scrape(base_url)
        tickets = {"endpoint": "/api/uploads/tickets/", "method": "POST", "status": "201"}
        assert scraped.value("appserver_http_requests_total", **tickets) >= 11
        assert scraped.value("appserver_callbacks_total", outcome="accepted") >= 1
        assert scraped.value("appserver_sts_assume_role_calls_total", outcome="ok") >= 1
        pictures = []
        for n in range(5):
            pictures.append(tmp_path / f"picture{n}.png")
            pictures[-1].write_bytes(demo_png(16 + n, 16))
        rows = _browser_uploads(f"{base_url}/upload/", password, pictures, chromium_path)
        assert rows == [["done", "100", ""]] * 5

        first.process.send_signal(signal.SIGINT)  # what Ctrl-C delivers
        assert first.process.wait(timeout=40) == 0
    finally:
        first.kill()
    assert all(_group_gone(pgid, timeout=10) for pgid in groups), first.output()
    assert _port_free(app_port) and _port_free(emulator_port)
    assert "stopped." in first.output()
    assert (tmp_path / "db.sqlite3").is_file()
    assert any((tmp_path / "emulator").iterdir())

    second = Supervisor(tmp_path, app_port, emulator_port)
    try:
        banner = second.wait_for_banner()
        assert "found demo user demo" in banner
        assert f"Demo user    demo / {password}" in banner
        assert f"Admin        admin / {admin_password}" in banner
        groups = second.child_groups()
        # The first run's uploads are still there: same database, same objects.
        again = run_demo(base_url=base_url, username="demo", password=password, say=lambda _: None)
        assert again.upload_id == result.upload_id + len(pictures) + 1
        # Tickets the server signs (SQLite, the embedded emulator): a plain PUT and a form.
        for mode, upload_id in (("url", again.upload_id + 1), ("form", again.upload_id + 2)):
            answer = _signed_upload(base_url, password, mode)
            assert answer["ok"] is True, answer
            assert answer["upload"]["id"] == upload_id
            assert answer["upload"]["size"] == len(SIGNED_DATA)
    finally:
        # Killed outright, the supervisor cannot clean up: its children go by themselves.
        second.kill()
    assert all(_group_gone(pgid, timeout=20) for pgid in groups), second.output()
    assert _port_free(app_port) and _port_free(emulator_port)
