"""A malformed number in the environment stops the start with one line naming the variable,
not a traceback from int() (manage.py and `make run` alike)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.processes import ROOT, run_manage


@pytest.mark.parametrize(
    ("name", "value", "kind"),
    [
        ("STS_DURATION_SECONDS", "1h", "a whole number"),
        ("UPLOAD_MAX_SIZE", "1GB", "a whole number"),
        ("OSS_TIMEOUT_SECONDS", "fast", "a number"),
        ("EMULATOR_PORT", "nine", "a whole number"),
    ],
)
def test_a_malformed_number_names_the_setting(name, value, kind):
    result = run_manage("check", env={"APP_ENV": "local", name: value})
    assert result.returncode == 1
    assert result.stderr == (
        f"Configuration error: {name} must be {kind}, not {value!r} (see docs/configuration.md).\n"
    )


def test_make_run_names_a_malformed_port():
    result = subprocess.run(
        [sys.executable, "scripts/run_local.py"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "APP_PORT": "80a"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr == "make run: APP_PORT must be a port number (1-65535), not '80a'.\n"
