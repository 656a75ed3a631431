"""Session policies handed to STS: rendered from template files, pure and validated.

Templates live in ``policies/templates/<name>.json`` (``POLICY_TEMPLATES_DIR`` points elsewhere if
an operator wants their own). They are JSON with two placeholders, ``$BUCKET_NAME`` and
``$PREFIX``, substituted inside JSON strings after parsing, never by pasting text into JSON, so a
bucket or prefix can never inject a statement. Both values come from the server's settings and the
user's public id, never from the request.

Two families:

- per-user scopes (``read``, ``write``, ``readwrite``): use ``$PREFIX`` and confine every grant
  to ``<bucket>/<prefix>*``; any user may ask for them.
- bucket-wide templates (the Alibaba sample servers' ``all``, ``bucket_read``,
  ``bucket_read_write``): no ``$PREFIX``; every holder can touch the whole bucket (``all``: every
  bucket the role reaches), so only staff get them (see ``scope_allowed_for``).

Every rendering is checked with the same grammar STS applies (``policies.grammar.parse_policy``) and
must fit STS's 2048-character limit once minified.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings

from accounts.selectors import user_storage_prefix
from policies.grammar import MAX_POLICY_LENGTH, PolicyError, parse_policy

USER_SCOPES = ("read", "write", "readwrite")
# Staff may hold a bucket-wide credential (support, migrations); "all" is as wide as the role
# itself, so only superusers get it.
STAFF_SCOPES = ("bucket_read", "bucket_read_write")
SUPERUSER_SCOPES = ("all",)
ALL_SCOPES = USER_SCOPES + STAFF_SCOPES + SUPERUSER_SCOPES
DEFAULT_SCOPE = "readwrite"

BUCKET_PLACEHOLDER = "$BUCKET_NAME"
PREFIX_PLACEHOLDER = "$PREFIX"

_TEMPLATE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# OSS bucket naming rules: 3-63 lowercase letters, digits and hyphens, not starting/ending in "-".
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
# A prefix is a folder path: no wildcard (it would widen the grant), no placeholder marker, no
# control characters; it ends with "/" so "users/ab/" never matches "users/abc/".
_PREFIX = re.compile(r"^[A-Za-z0-9!\-_.'()/=+@,;:&]+/$")


class PolicyTemplateError(Exception):
    """A template that is unknown, broken, or renders into something STS would refuse."""

    def __init__(self, template: str, problem: str) -> None:
        super().__init__(f'Policy template "{template}": {problem}')
        self.template = template
        self.problem = problem


@dataclass(frozen=True)
class RenderedPolicy:
    template: str
    bucket: str
    prefix: str | None
    text: str  # minified JSON, exactly what is sent to STS
    sha256: str

    @property
    def document(self) -> dict:
        return json.loads(self.text)


def _templates_dir() -> Path:
    return Path(settings.POLICY_TEMPLATES_DIR)


def policy_template_names() -> list[str]:
    """Every template file present, sorted (for explain_policy's messages and checks)."""
    directory = _templates_dir()
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.json") if _TEMPLATE_NAME.match(p.stem))


def _substitute(node: Any, values: dict[str, str]) -> Any:
    if isinstance(node, str):
        for placeholder, value in values.items():
            node = node.replace(placeholder, value)
        return node
    if isinstance(node, list):
        return [_substitute(item, values) for item in node]
    if isinstance(node, dict):
        return {key: _substitute(value, values) for key, value in node.items()}
    return node


def _uses(node: Any, placeholder: str) -> bool:
    if isinstance(node, str):
        return placeholder in node
    if isinstance(node, list):
        return any(_uses(item, placeholder) for item in node)
    if isinstance(node, dict):
        return any(_uses(value, placeholder) for value in node.values())
    return False


@lru_cache(maxsize=2048)
def _render(template: str, bucket: str, prefix: str | None, directory: str) -> RenderedPolicy:
    # Cached: rendering is pure in its arguments (the directory included), and the credentials
    # endpoint renders on every request to find its cache entry.
    if not _TEMPLATE_NAME.match(template):
        raise PolicyTemplateError(template, "not a valid template name.")
    path = Path(directory) / f"{template}.json"
    if not path.is_file():
        known = ", ".join(policy_template_names()) or "none"
        raise PolicyTemplateError(template, f"no such template (known: {known}).")
    if not _BUCKET_NAME.match(bucket):
        raise PolicyTemplateError(template, f"{bucket!r} is not a valid OSS bucket name.")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problem = f"the file {path.name} is not valid JSON ({exc})."
        raise PolicyTemplateError(template, problem) from None
    per_user = _uses(document, PREFIX_PLACEHOLDER)
    if per_user and prefix is None:
        raise PolicyTemplateError(template, "it is per-user and needs a prefix.")
    if not per_user and prefix is not None:
        raise PolicyTemplateError(template, "it is bucket-wide and takes no prefix.")
    if prefix is not None and not _PREFIX.match(prefix):
        raise PolicyTemplateError(
            template, f"the prefix {prefix!r} must be a folder path ending in '/', no wildcards."
        )
    values = {BUCKET_PLACEHOLDER: bucket}
    if prefix is not None:
        values[PREFIX_PLACEHOLDER] = prefix
    rendered = _substitute(document, values)
    text = json.dumps(rendered, separators=(",", ":"), ensure_ascii=False)
    if "$" in text:
        raise PolicyTemplateError(template, "it has a placeholder this renderer does not know.")
    if len(text) > MAX_POLICY_LENGTH:
        raise PolicyTemplateError(
            template,
            f"the rendered policy has {len(text)} characters; STS accepts at most "
            f"{MAX_POLICY_LENGTH}.",
        )
    try:
        parse_policy(text)
    except PolicyError as exc:
        raise PolicyTemplateError(template, exc.message) from None
    return RenderedPolicy(
        template=template,
        bucket=bucket,
        prefix=prefix,
        text=text,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
    )


def policy_render_text(*, template: str, bucket: str, prefix: str | None) -> RenderedPolicy:
    """The minified policy text (what goes to STS) with its SHA-256; raises PolicyTemplateError."""
    # str() of the setting, not Path(): this runs on every credentials request.
    return _render(template, bucket, prefix, str(settings.POLICY_TEMPLATES_DIR))


def policy_render(*, template: str, bucket: str, prefix: str | None) -> dict:
    """The policy document as a dict (a fresh copy each call); raises PolicyTemplateError."""
    return policy_render_text(template=template, bucket=bucket, prefix=prefix).document


def policy_for_user(*, user: Any, scope: str) -> RenderedPolicy:
    """The session policy of `scope` for `user`: the configured bucket, and for per-user scopes
    the user's own prefix (from the server's setting and public id only)."""
    prefix = user_storage_prefix(user=user) if scope in USER_SCOPES else None
    return policy_render_text(template=scope, bucket=settings.OSS_BUCKET, prefix=prefix)


def scope_is_per_user(scope: str) -> bool:
    return scope in USER_SCOPES


def scope_allowed_for(*, scope: str, is_staff: bool, is_superuser: bool) -> bool:
    """Whether a user may receive credentials with this scope's policy."""
    if scope in USER_SCOPES:
        return True
    if scope in STAFF_SCOPES:
        return is_staff or is_superuser
    if scope in SUPERUSER_SCOPES:
        return is_superuser
    return False
