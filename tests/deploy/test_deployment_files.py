"""The deployment files stay consistent with the settings: docker-compose.yml parses, every
service has a health check, the app gets every setting production requires, and with the
compose environment `manage.py check --deploy` finds nothing but the one warning compose
accepts on purpose (no TLS terminator, so no HTTPS redirect)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _required_settings() -> set[str]:
    # The settings module and the parts it imports (appserver/conf/).
    paths = [
        ROOT / "appserver" / "settings.py",
        *sorted((ROOT / "appserver" / "conf").glob("*.py")),
    ]
    source = "".join(path.read_text() for path in paths)
    return set(re.findall(r'\brequired\(\s*"([A-Z_]+)"', source))


def _check_deploy(env_overrides: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST"))}
    env.update(str_env(_compose()["services"]["app"]["environment"]))
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--tag", "security"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def str_env(values: dict) -> dict[str, str]:
    return {key: str(value) for key, value in values.items()}


def test_compose_services_and_health_checks():
    services = _compose()["services"]
    assert set(services) == {"db", "redis", "emulator", "migrate", "app", "sweep", "events"}
    for name in ("db", "redis", "emulator", "app"):
        assert services[name]["healthcheck"]["test"], name
    assert services["app"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }
    assert services["app"]["command"] == ["gunicorn", "-c", "gunicorn.conf.py", "appserver.wsgi"]
    # The sweep runs every minute beside the app, with the app's settings, after migrations.
    assert "python manage.py sweep_uploads; sleep 60" in services["sweep"]["command"][-1]
    assert services["sweep"]["environment"] == services["app"]["environment"]
    assert services["sweep"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }
    # The webhook worker likewise, long-running.
    assert services["events"]["command"] == ["python", "manage.py", "deliver_events"]
    assert services["events"]["environment"] == services["app"]["environment"]
    assert services["events"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }


def test_compose_gives_the_app_every_required_setting():
    environment = _compose()["services"]["app"]["environment"]
    required = _required_settings()
    assert {"SECRET_KEY", "DATABASE_URL", "OSS_CALLBACK_URL"} <= required
    assert required - set(environment) == set()
    assert environment["APP_ENV"] == "production"
    assert environment["OSS_PATH_STYLE"] == "true"  # a service name, not an IP
    assert environment["LOG_FORMAT"] == "json"
    assert "app" in environment["ALLOWED_HOSTS"].split(",")  # the callbacks' Host


@pytest.mark.slow(7)
def test_check_deploy_with_the_compose_environment():
    secret = "compose-test-" + "k3y" * 20
    local = {
        "SECRET_KEY": secret,
        "DATABASE_URL": "sqlite:////tmp/check-deploy.sqlite3",
        "REDIS_URL": "redis://127.0.0.1:6379/15",
    }
    as_composed = _check_deploy(local)
    assert as_composed.returncode == 0, as_composed.stderr
    warnings = re.findall(r"\(([a-z_]+\.[A-Z]\d+)\)", as_composed.stdout + as_composed.stderr)
    assert warnings == ["security.W008"]  # SECURE_SSL_REDIRECT is off without a TLS proxy

    behind_tls = _check_deploy({**local, "SECURE_SSL_REDIRECT": "true"})
    assert behind_tls.returncode == 0, behind_tls.stderr
    assert "System check identified no issues" in behind_tls.stdout


def test_dockerfile_runs_gunicorn_as_a_non_root_user_with_a_health_check():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.count("FROM python:3.11-slim") == 2
    assert "requirements/prod.txt" in dockerfile
    assert "collectstatic --noinput" in dockerfile
    assert re.search(r"^USER app$", dockerfile, re.M)
    assert "HEALTHCHECK" in dockerfile and "scripts/healthcheck.py" in dockerfile
    assert dockerfile.rstrip().endswith(
        'CMD ["gunicorn", "-c", "gunicorn.conf.py", "appserver.wsgi"]'
    )
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".git", "var/", "node_modules/"} <= set(ignored)


def test_make_test_keeps_off_redis_database_0():
    """The suite empties its Redis database between tests: `make test` must not point it at
    database 0, where other local work keeps its data."""
    # Without the variables of a `make test TEST_REDIS_URL=...` this suite may be running under
    # (make hands them down in MAKEFLAGS): the default is what is checked.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    dry_run = subprocess.run(
        ["make", "-n", "test", "VENV=/nonexistent-venv"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    pytest_line = next(line for line in dry_run.splitlines() if "/bin/pytest" in line)
    redis_url = re.search(r"REDIS_URL=(\S+)", pytest_line).group(1)
    assert redis_url == "redis://127.0.0.1:6379/15"
    assert "database **15** (`redis://127.0.0.1:6379/15`)" in (ROOT / "README.md").read_text()
