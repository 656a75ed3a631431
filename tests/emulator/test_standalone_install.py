"""The emulator stands on its own: `pip install ./emulator` into a fresh virtualenv gives a
working `python -m emulator` that serves STS and OSS to the official SDKs, with nothing of the
app server (no Django, no project checkout on the path).

The install resolves the emulator's dependencies (cryptography, crcmod, Pillow, setuptools for the
build, in pip's isolated build environment) the way any user's pip does: from the configured index
and pip's cache. The test's own pip installs into the new environment (`pip --python`), which is
made without a pip of its own: a copy of pip there would only cost the time to install it, and
would prove nothing about the emulator.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path
from types import SimpleNamespace

import oss2
import pytest

from tests.emulator.conftest import assume_role, sts_bucket, user_policy

pytestmark = [pytest.mark.slow(15), pytest.mark.xdist_group("standalone_install")]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with `pip install ./emulator` run from a copy of the checkout's
    emulator/ and policies/ (the build must not leave build/ or egg-info in the worktree)."""
    root = tmp_path_factory.mktemp("standalone")
    source = root / "src"
    ignore = shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
    shutil.copytree(REPO / "emulator", source / "emulator", ignore=ignore)
    shutil.copytree(REPO / "policies", source / "policies", ignore=ignore)
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    # --no-compile: the bytecode of Pillow's and cryptography's modules is written when they
    # are imported, not all of it up front.
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-compile"]
    subprocess.run(
        [*pip, "--quiet", "./emulator"],
        cwd=source,
        env=_clean_env(),
        check=True,
        timeout=600,
    )
    return python


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def test_the_installed_emulator_has_its_own_code_and_no_django(installed, tmp_path):
    probe = (
        "import json, sys, emulator, policies.grammar, policies.evaluation;"
        "import importlib.util as u;"
        "print(json.dumps({'emulator': emulator.__file__, 'grammar': policies.grammar.__file__,"
        " 'django': u.find_spec('django') is not None, 'services': u.find_spec('policies.services')"
        " is not None}))"
    )
    out = subprocess.run(
        [installed, "-c", probe],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = json.loads(out)
    site = str(installed.parent.parent)
    assert found["emulator"].startswith(site)
    assert found["grammar"].startswith(site)
    # The policy language comes along; the app server's Django code does not.
    assert found["django"] is False
    assert found["services"] is False


def test_python_m_emulator_help(installed, tmp_path):
    result = subprocess.run(
        [installed, "-m", "emulator", "--help"],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.startswith("usage: python -m emulator")
    assert "--bucket" in result.stdout


def test_the_installed_emulator_serves_sts_and_oss(installed, tmp_path):
    process = subprocess.Popen(
        [installed, "-m", "emulator", "--port", "0", "--memory"],
        cwd=tmp_path,
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        first = process.stdout.readline()
        assert "listening on http://" in first, first
        endpoint = first.rsplit(" ", 1)[1].strip()
        emu = SimpleNamespace(endpoint=endpoint)
        # STS: AssumeRole with a per-user session policy (grammar checked by the emulator).
        creds = assume_role(emu, policy=user_policy("carol"), session="carol")
        assert creds.access_key_id.startswith("STS.")
        # OSS: the session policy is evaluated for each request.
        bucket = sts_bucket(emu, creds, "v4")
        bucket.put_object("users/carol/hello.txt", b"standalone")
        assert bucket.get_object("users/carol/hello.txt").read() == b"standalone"
        with pytest.raises(oss2.exceptions.AccessDenied):
            bucket.put_object("users/dave/hello.txt", b"not carol's")
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()
