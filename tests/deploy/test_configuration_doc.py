"""docs/configuration.md lists every environment variable the code reads: the settings, gunicorn's
configuration and `make run`'s supervisor. A setting added without its documentation fails here."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "configuration.md").read_text()

_SETTINGS_READ = re.compile(r'(?:env\.\w+|\brequired)\(\s*"([A-Z][A-Z0-9_]+)"')
# The settings module and the parts it imports.
_SETTINGS_FILES = [
    ROOT / "appserver" / "settings.py",
    *sorted((ROOT / "appserver" / "conf").glob("*.py")),
]
_OS_READ = re.compile(r'os\.environ\.(?:get|setdefault)\(\s*"([A-Z][A-Z0-9_]+)"')


def _documented(name: str) -> bool:
    return f"`{name}`" in DOC


def test_every_setting_variable_is_documented():
    names = set(_SETTINGS_READ.findall("".join(path.read_text() for path in _SETTINGS_FILES)))
    assert {"SECRET_KEY", "OSS_CALLBACK_URL", "UPLOAD_MAX_SIZE"} <= names  # the pattern works
    assert sorted(name for name in names if not _documented(name)) == []


def test_every_gunicorn_and_make_run_variable_is_documented():
    names: set[str] = set()
    for path in ("gunicorn.conf.py", "scripts/run_local.py", "scripts/demo_client.py"):
        names |= set(_OS_READ.findall((ROOT / path).read_text()))
    # Set by the supervisor for its children, or the standard ones it only passes on.
    names -= {"PYTHONUNBUFFERED"}
    assert {"GUNICORN_BIND", "APP_PORT", "EMULATOR_PORT"} <= names
    assert sorted(name for name in names if not _documented(name)) == []
