"""System checks: configuration mistakes that would otherwise show up as 503s in production."""

from __future__ import annotations

from cryptography.fernet import Fernet
from django.conf import settings
from django.core.checks import Error, Warning, register

from policies.services import ALL_SCOPES, USER_SCOPES, PolicyTemplateError, policy_render_text

# Credentials reused for less than this are barely reused: nearly one STS call per request.
MIN_REUSE_SECONDS = 300


@register()
def credentials_settings_check(app_configs, **kwargs) -> list:
    from tokens.services import SDK_REFRESH_MARGIN_SECONDS

    problems = []
    for key in filter(None, (k.strip() for k in settings.CREDENTIALS_ENCRYPTION_KEY.split(","))):
        try:
            Fernet(key.encode())
        except ValueError:
            problems.append(
                Error(
                    "CREDENTIALS_ENCRYPTION_KEY holds a value that is not a Fernet key.",
                    hint='Generate one with: python -c "from cryptography.fernet import Fernet; '
                    'print(Fernet.generate_key().decode())"',
                    id="tokens.E001",
                )
            )
    reuse = (
        settings.STS_DURATION_SECONDS
        - SDK_REFRESH_MARGIN_SECONDS
        - settings.CREDENTIALS_SAFETY_WINDOW_SECONDS
    )
    if reuse < MIN_REUSE_SECONDS:
        problems.append(
            Warning(
                f"Credentials would be reused for only {reuse} s: STS_DURATION_SECONDS minus the "
                f"SDKs' {SDK_REFRESH_MARGIN_SECONDS} s margin minus "
                "CREDENTIALS_SAFETY_WINDOW_SECONDS leaves too little, so nearly every request "
                "would call STS (limit ~100/s per account).",
                hint="Raise STS_DURATION_SECONDS (and the role's MaxSessionDuration) or lower "
                "CREDENTIALS_SAFETY_WINDOW_SECONDS.",
                id="tokens.W001",
            )
        )
    prefix = str(settings.CACHES.get("default", {}).get("KEY_PREFIX", ""))
    if "{" in prefix or "}" in prefix:
        problems.append(
            Error(
                "CACHE_KEY_PREFIX contains a brace: Redis Cluster would hash the prefix's braces "
                "instead of each user's {u<id>} tag, and the credentials scripts' keys could "
                "land in different slots.",
                hint="Use a prefix without { and }.",
                id="tokens.E002",
            )
        )
    for scope in ALL_SCOPES:
        sample = settings.STORAGE_PREFIX_TEMPLATE.format(user_public_id="0" * 32)
        prefix = sample if scope in USER_SCOPES else None
        try:
            policy_render_text(template=scope, bucket=settings.OSS_BUCKET, prefix=prefix)
        except PolicyTemplateError as exc:
            problems.append(Error(str(exc), id="policies.E001"))
    return problems
