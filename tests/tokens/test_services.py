"""tokens.services called directly (the endpoint tests go through HTTP)."""

from __future__ import annotations

import re

import pytest

from appserver.errors import InvalidInput, PermissionDenied, Throttled
from tokens.services import credentials_issue, session_name_for

pytestmark = pytest.mark.django_db


def test_session_name_is_the_public_id_and_valid_for_sts(user):
    name = session_name_for(user=user)
    assert name == f"app-{user.public_id}"
    assert re.fullmatch(r"[A-Za-z0-9.@_-]{2,64}", name)
    assert user.username not in name


@pytest.fixture
def local_memory_cache(settings):
    """The embedded default's cache (no Redis): the throttle's fallback path."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "t"}
    }


def test_rate_limit_without_redis(user, alibaba, settings, local_memory_cache):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "credentials": "2/hour",
        },
    }
    first = credentials_issue(user=user, scope="read", client_ip=None, user_agent="")
    second = credentials_issue(user=user, scope="read", client_ip=None, user_agent="")
    assert second.access_key_id == first.access_key_id
    assert second.reused and not first.reused
    with pytest.raises(Throttled) as caught:
        credentials_issue(user=user, scope="read", client_ip=None, user_agent="")
    assert caught.value.retry_after == 3600
    assert caught.value.message == "Too many credential requests. Retry in 3600 seconds."


def test_scope_errors(user, alibaba):
    with pytest.raises(InvalidInput) as invalid:
        credentials_issue(user=user, scope="", client_ip=None, user_agent="")
    assert invalid.value.code == "invalid_scope"
    assert invalid.value.fields == {
        "scope": ["Use one of: read, write, readwrite, bucket_read, bucket_read_write, all."]
    }
    with pytest.raises(PermissionDenied) as denied:
        credentials_issue(user=user, scope="all", client_ip=None, user_agent="")
    assert denied.value.code == "scope_not_allowed"


def test_repr_never_shows_the_secret(user, alibaba):
    issued = credentials_issue(user=user, scope="write", client_ip=None, user_agent="")
    assert issued.access_key_secret not in repr(issued)
    assert issued.security_token not in repr(issued)
    assert issued.access_key_id in repr(issued)


def test_a_forged_client_address_does_not_break_the_ledger(user, alibaba):
    from tokens.models import CredentialGrant

    credentials_issue(user=user, scope="read", client_ip="not-an-ip', --", user_agent="x" * 600)
    grant = CredentialGrant.objects.get()
    assert grant.client_ip is None
    assert grant.user_agent == "x" * 512


def test_redis_down_is_a_503_not_a_500(user, alibaba, settings):
    import socket

    from appserver.errors import ServiceUnavailable

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.CACHES = {
        "default": {
            "BACKEND": "appserver.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    calls = alibaba.sts.assume_role_calls
    with pytest.raises(ServiceUnavailable) as caught:
        credentials_issue(user=user, scope="read", client_ip=None, user_agent="")
    assert caught.value.code == "cache_unavailable"
    assert caught.value.retry_after == 5
    assert alibaba.sts.assume_role_calls == calls
