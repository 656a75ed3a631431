"""The app server never imports the emulator: the emulator is a test double and a tool for
development; production code that imported it would ship it. Only the emulator itself, the tests
and the benchmarks (which measure the emulator and drive it in-process) are its consumers.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow(3)]

REPO = Path(__file__).resolve().parents[2]
CONSUMERS = {"emulator", "tests", "bench"}
NOT_SOURCE = {".venv", "node_modules", "var", "staticfiles", "build", ".git"}


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in {"import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return names


def _product_sources() -> list[Path]:
    sources = []
    for path in REPO.rglob("*.py"):
        parts = path.relative_to(REPO).parts
        if parts[0] in CONSUMERS or NOT_SOURCE.intersection(parts):
            continue
        sources.append(path)
    return sources


def test_no_module_outside_the_emulator_tests_and_bench_imports_the_emulator():
    sources = _product_sources()
    # The scan reaches the apps, the settings and the scripts (it would pass vacuously otherwise).
    scanned = {p.relative_to(REPO).parts[0] for p in sources}
    assert {"appserver", "accounts", "policies", "tokens", "uploads", "scripts"} <= scanned
    offenders = sorted(
        f"{path.relative_to(REPO)} imports {name}"
        for path in sources
        for name in _imported_modules(path)
        if name == "emulator" or name.startswith("emulator.")
    )
    assert offenders == []


def test_the_scan_sees_every_form_of_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import emulator.config\n"
        "from emulator import Emulator\n"
        "import importlib\n"
        "importlib.import_module('emulator.server')\n"
        "from . import emulator\n"
    )
    assert {"emulator.config", "emulator", "emulator.server"} <= _imported_modules(sample)


def test_the_policy_language_is_pure():
    # The emulator's wheel ships policies/grammar.py and policies/evaluation.py alone: they may
    # import the standard library and each other, nothing of Django or the project.
    allowed_project = {"policies.grammar", "policies.evaluation"}
    for name in ("grammar", "evaluation"):
        imported = _imported_modules(REPO / "policies" / f"{name}.py")
        foreign = {
            module
            for module in imported
            if module.split(".")[0] not in sys.stdlib_module_names and module not in allowed_project
        }
        assert foreign == set(), name


def test_the_embedded_settings_point_at_what_the_emulator_serves_by_default():
    # The settings (appserver/conf/alibaba.py) spell the emulator's development defaults out
    # instead of importing them; this keeps the two from drifting apart (`make run` needs them
    # equal).
    from emulator import config

    probe = (
        "import json, django; django.setup(); from django.conf import settings as s;"
        "print(json.dumps([s.ALIBABA_ACCESS_KEY_ID, s.ALIBABA_ACCESS_KEY_SECRET, s.STS_ENDPOINT,"
        " s.OSS_ENDPOINT, s.STS_ROLE_ARN, s.OSS_BUCKET, s.OSS_REGION]))"
    )
    env = {
        "PATH": os.environ["PATH"],
        "APP_ENV": "local",
        "DJANGO_SETTINGS_MODULE": "appserver.settings",
    }
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, check=True
    ).stdout
    endpoint = f"http://{config.DEFAULT_HOST}:{config.DEFAULT_PORT}"
    assert json.loads(out) == [
        config.DEFAULT_ROOT_ACCESS_KEY_ID,
        config.DEFAULT_ROOT_ACCESS_KEY_SECRET,
        endpoint,
        endpoint,
        config.DEFAULT_ROLE_ARN,
        config.DEFAULT_BUCKET,
        config.DEFAULT_REGION,
    ]
