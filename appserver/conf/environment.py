"""How the settings read the environment (django-environ), and whether this is production.

`env` reads a variable with its cast, naming the variable when the value does not parse;
`required()` is for the settings production must be given. Every other settings module reads
the environment through these two, so the rules (and the messages) are the same everywhere.
"""

from __future__ import annotations

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parents[2]


class _Env(environ.Env):
    """django-environ, with a message that names the variable when a value does not parse
    (`STS_DURATION_SECONDS=1h` stops the start with that, not with int()'s traceback)."""

    def get_value(self, var, cast=None, default=environ.Env.NOTSET, parse_default=False):
        try:
            return super().get_value(var, cast=cast, default=default, parse_default=parse_default)
        except ValueError:
            kind = {int: "a whole number", float: "a number"}.get(cast, f"a valid {cast}")
            raise ImproperlyConfigured(
                f"{var} must be {kind}, not {self.ENVIRON.get(var)!r} (see docs/configuration.md)."
            ) from None


env = _Env()
# A developer's own overrides; never committed (see .env.example).
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")

APP_ENV = env.str("APP_ENV", default="local")
if APP_ENV not in {"local", "production"}:
    raise ImproperlyConfigured(f"APP_ENV must be 'local' or 'production', not {APP_ENV!r}.")
PRODUCTION = APP_ENV == "production"


def required(name: str, cast=str, local_default=None):
    """A setting production must be given; locally it falls back to the embedded default."""
    if name in env.ENVIRON and env.ENVIRON[name] != "":
        return env.get_value(name, cast=cast)
    if PRODUCTION:
        raise ImproperlyConfigured(
            f"{name} is not set. APP_ENV=production needs it: set it in the environment "
            "(see .env.example and docs/configuration.md)."
        )
    return local_default
