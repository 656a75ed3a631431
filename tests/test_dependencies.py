"""Which app may import which: events (the outbox) is below accounts, accounts is the base the
other apps build on, and no app reaches into another app's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("accounts", "appserver", "events", "policies", "reports", "tokens", "uploads", "webclient")


def _imports(app: str) -> list[tuple[str, str, str]]:
    """(file, imported module, imported name or "") for every import in the app's code."""
    found = []
    for path in sorted((ROOT / app).rglob("*.py")):
        if "migrations" in path.parts:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(str(path.relative_to(ROOT)), alias.name, "") for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found += [
                    (str(path.relative_to(ROOT)), node.module, alias.name) for alias in node.names
                ]
    return found


def test_the_imports_are_found():
    # The checks below pass vacuously if the walk finds nothing.
    modules = {module for _, module, _ in _imports("accounts")}
    assert {"accounts.models", "appserver.errors"} <= modules


def test_accounts_imports_none_of_the_apps_built_on_it():
    above = ("policies", "reports", "tokens", "uploads", "webclient", "emulator")
    leaks = [
        (path, module) for path, module, _ in _imports("accounts") if module.split(".")[0] in above
    ]
    assert leaks == []


def test_events_imports_none_of_the_apps_that_write_events():
    # accounts and uploads write events inside their transactions; events names users by their
    # public id (a string) and knows nothing of uploads, so they may import it.
    above = ("accounts", "policies", "reports", "tokens", "uploads", "webclient", "emulator")
    leaks = [
        (path, module) for path, module, _ in _imports("events") if module.split(".")[0] in above
    ]
    assert leaks == []


@pytest.mark.parametrize("app", APPS)
def test_no_app_imports_another_apps_private_names(app):
    leaks = [
        (path, f"{module}.{name}")
        for path, module, name in _imports(app)
        if module.split(".")[0] in APPS
        and module.split(".")[0] != app
        and (name.startswith("_") or any(part.startswith("_") for part in module.split(".")))
    ]
    assert leaks == []
