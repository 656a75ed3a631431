"""gunicorn.conf.py freezes what a worker inherits and loads (gc.freeze): the worker's full
garbage collections skip the app's own objects, so they neither pause requests to walk them nor
copy the master's pages. Checked in a real worker, with the app preloaded and without."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.processes import ROOT, _wait, app_environment, free_port

pytestmark = pytest.mark.slow(8)


@pytest.mark.parametrize("preload", ["1", "0"])
def test_a_worker_keeps_the_app_out_of_its_collections(tmp_path, preload):
    port = free_port()
    env = app_environment(
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_WORKERS="1",
        GUNICORN_THREADS="1",
        GUNICORN_PRELOAD=preload,
        GUNICORN_ACCESS_LOG="",
        DATABASE_URL="sqlite:///" + str(tmp_path / "db.sqlite3"),
    )
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    with (tmp_path / "gunicorn.log").open("w") as log:
        process = subprocess.Popen(
            [gunicorn, "-c", str(ROOT / "gunicorn.conf.py"), "tests.deploy.gc_probe:application"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:

            def probe() -> dict | None:
                assert process.poll() is None, (tmp_path / "gunicorn.log").read_text()
                try:
                    return requests.get(f"http://127.0.0.1:{port}/gc-probe", timeout=2).json()
                except requests.RequestException:
                    return None

            _wait(lambda: probe() is not None, "the probe answering", timeout=60)
            state = probe()
        finally:
            process.terminate()
            process.wait(timeout=20)
    # Django, DRF and the project are tens of thousands of objects; what the worker still
    # tracks is what a request left behind, a small part of it.
    assert state["frozen"] > 20_000, state
    assert state["tracked"] < state["frozen"] / 4, state
