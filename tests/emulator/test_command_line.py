"""`python -m emulator` as a process: Ctrl-C's signal stops it even when it was started in the
background of a script, which hands it SIGINT ignored."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.processes import ROOT


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_stops_on_sigint_and_sigterm_even_when_started_in_the_background(signum):
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--port", "0", "--memory"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_ignore_sigint,
    )
    try:
        first = process.stdout.readline()
        assert first.startswith("Alibaba Cloud emulator (STS + OSS) listening on http://")
        while not process.stdout.readline().startswith("  data:"):
            pass
        process.send_signal(signum)
        rest, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert rest == "stopped\n"
