"""GET/POST /api/sts/credentials/ over real HTTP, with the emulator as STS."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import redis
import requests
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import connections

from accounts.services import user_suspend, user_unsuspend
from tests.factories import UserFactory
from tests.helpers import CREDENTIALS_FIELDS
from tokens.models import CredentialGrant
from tokens.services import credentials_cache_key, credentials_flush_served_counts

pytestmark = pytest.mark.django_db(transaction=True)


def _time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def test_response_is_what_the_mobile_sdks_parse(credentials, user, alibaba, settings):
    response = credentials.get(user)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body) == CREDENTIALS_FIELDS
    assert body["StatusCode"] == 200
    assert body["AccessKeyId"].startswith("STS.")
    assert body["AccessKeySecret"]
    assert body["SecurityToken"]
    assert body["Bucket"] == settings.OSS_BUCKET
    assert body["Region"] == settings.OSS_REGION == "cn-hangzhou"
    assert body["Endpoint"] == alibaba.endpoint
    assert body["Prefix"] == f"users/{user.public_id}/"
    assert body["Scope"] == "readwrite"
    expiration, refresh_after = _time(body["Expiration"]), _time(body["RefreshAfter"])
    server_time = _time(body["ServerTime"])
    # The SDKs' 300 s margin plus the 300 s default safety window.
    assert expiration - refresh_after == timedelta(seconds=600)
    assert server_time < refresh_after
    # DurationSeconds went to STS as configured: the expiry is an hour after issue.
    assert timedelta(seconds=3590) <= expiration - server_time <= timedelta(seconds=3600)


def test_post_works_like_get(credentials, user):
    first = credentials.get(user, "write", method="POST")
    assert first.status_code == 200
    assert first.json()["Scope"] == "write"
    assert credentials.get(user, "write").json()["AccessKeyId"] == first.json()["AccessKeyId"]


def test_invalid_scope_is_400(credentials, user, alibaba):
    calls = alibaba.sts.assume_role_calls
    response = credentials.get(user, "everything")
    assert response.status_code == 400
    assert response.headers["Cache-Control"] == "no-store"
    assert response.json() == {
        "StatusCode": 400,
        "ErrorCode": "invalid_scope",
        "ErrorMessage": "Unknown scope 'everything'.",
    }
    assert alibaba.sts.assume_role_calls == calls


def test_unauthenticated_is_401_in_the_sdk_shape(credentials):
    response = requests.get(credentials.url, timeout=10)
    assert response.status_code == 401
    assert response.json()["StatusCode"] == 401
    assert response.json()["ErrorCode"] == "not_authenticated"


def test_bucket_wide_scopes_are_refused_to_ordinary_users(credentials, user, alibaba):
    calls = alibaba.sts.assume_role_calls
    for scope in ("bucket_read", "bucket_read_write", "all"):
        response = credentials.get(user, scope)
        assert response.status_code == 403
        assert response.json() == {
            "StatusCode": 403,
            "ErrorCode": "scope_not_allowed",
            "ErrorMessage": f"The scope '{scope}' covers the whole bucket and is for staff only.",
        }
    assert alibaba.sts.assume_role_calls == calls
    assert CredentialGrant.objects.count() == 0


def test_staff_get_bucket_wide_scopes_but_not_all(credentials):
    staff = UserFactory(is_staff=True)
    response = credentials.get(staff, "bucket_read")
    assert response.status_code == 200
    assert response.json()["Prefix"] == ""
    assert response.json()["Scope"] == "bucket_read"
    assert credentials.get(staff, "all").status_code == 403
    superuser = UserFactory(is_staff=True, is_superuser=True)
    assert credentials.get(superuser, "all").status_code == 200


def test_cached_credentials_are_reused_and_counted(credentials, user, alibaba):
    calls = alibaba.sts.assume_role_calls
    first = credentials.get(user, "readwrite", **{"User-Agent": "MyApp/1.0 (Android 14)"})
    second = credentials.get(user, "readwrite")
    third = credentials.get(user, "readwrite")
    assert alibaba.sts.assume_role_calls == calls + 1
    keys = {r.json()["AccessKeyId"] for r in (first, second, third)}
    assert keys == {first.json()["AccessKeyId"]}
    assert second.json()["SecurityToken"] == first.json()["SecurityToken"]
    assert second.json()["Expiration"] == first.json()["Expiration"]

    grant = CredentialGrant.objects.get()
    assert grant.user == user
    assert grant.scope == "readwrite"
    assert grant.bucket == django_settings.OSS_BUCKET
    assert grant.prefix == f"users/{user.public_id}/"
    assert grant.access_key_id == first.json()["AccessKeyId"]
    assert grant.expiration == _time(first.json()["Expiration"])
    assert len(grant.sts_request_id) == 36
    assert grant.client_ip == "127.0.0.1"
    assert grant.user_agent == "MyApp/1.0 (Android 14)"
    assert grant.times_served == 3
    assert grant.last_served_at is not None
    # The ledger never holds the secret or the token.
    row = " ".join(str(v) for v in CredentialGrant.objects.values().get().values())
    assert first.json()["AccessKeySecret"] not in row
    assert first.json()["SecurityToken"] not in row


def test_ledger_counts_are_batched(credentials, user, settings):
    settings.CREDENTIALS_SERVED_FLUSH_SECONDS = 3600
    credentials_flush_served_counts()  # whatever earlier tests left in this process
    body = credentials.get(user).json()
    for _ in range(4):
        assert credentials.get(user).json()["AccessKeyId"] == body["AccessKeyId"]
    grant = CredentialGrant.objects.get()
    assert grant.times_served == 1  # the issuing request; the 4 hand-outs wait in memory
    credentials_flush_served_counts()
    grant.refresh_from_db()
    assert grant.times_served == 5


def test_each_scope_and_user_has_its_own_credentials(credentials, user, other_user, alibaba):
    calls = alibaba.sts.assume_role_calls
    mine = credentials.get(user, "readwrite").json()["AccessKeyId"]
    mine_read = credentials.get(user, "read").json()["AccessKeyId"]
    theirs = credentials.get(other_user, "readwrite").json()["AccessKeyId"]
    assert len({mine, mine_read, theirs}) == 3
    assert alibaba.sts.assume_role_calls == calls + 3


def test_credentials_too_close_to_expiry_are_refreshed(credentials, user, alibaba, settings):
    calls = alibaba.sts.assume_role_calls
    first = credentials.get(user).json()
    assert credentials.get(user).json()["AccessKeyId"] == first["AccessKeyId"]
    # The cached credentials (about 3600 s left) now have less than 300 s + 3400 s left: the
    # margin is judged on every read, so the next request must get fresh ones.
    settings.CREDENTIALS_SAFETY_WINDOW_SECONDS = 3400
    fresh = credentials.get(user).json()
    assert fresh["AccessKeyId"] != first["AccessKeyId"]
    assert alibaba.sts.assume_role_calls == calls + 2
    assert CredentialGrant.objects.count() == 2


def test_credentials_shorter_than_the_margin_are_never_reused(credentials, user, alibaba, settings):
    settings.STS_DURATION_SECONDS = 900
    settings.CREDENTIALS_SAFETY_WINDOW_SECONDS = 600  # 300 + 600 >= 900: nothing left to reuse
    calls = alibaba.sts.assume_role_calls
    first = credentials.get(user).json()
    second = credentials.get(user).json()
    assert first["AccessKeyId"] != second["AccessKeyId"]
    assert alibaba.sts.assume_role_calls == calls + 2
    assert cache.get(credentials_cache_key(user=user, scope="readwrite")) is None


def test_a_changed_prefix_is_never_served_stale_credentials(credentials, user, settings):
    first = credentials.get(user).json()
    settings.STORAGE_PREFIX_TEMPLATE = "tenants/a/{user_public_id}/"
    second = credentials.get(user).json()
    assert second["Prefix"] == f"tenants/a/{user.public_id}/"
    assert second["AccessKeyId"] != first["AccessKeyId"]


def test_single_flight_under_concurrent_requests(credentials, user, alibaba):
    calls = alibaba.sts.assume_role_calls
    threads_count = 20
    barrier = threading.Barrier(threads_count)
    responses: list[requests.Response] = []
    lock = threading.Lock()

    def fetch() -> None:
        try:
            barrier.wait(timeout=30)
            response = credentials.get(user)
            with lock:
                responses.append(response)
        finally:
            # bearer() writes the token's row from this thread: its connection would otherwise
            # stay open, and the test database could not be dropped at the end of the run.
            connections.close_all()

    threads = [threading.Thread(target=fetch) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [r.status_code for r in responses] == [200] * threads_count
    assert len({r.json()["AccessKeyId"] for r in responses}) == 1
    assert alibaba.sts.assume_role_calls == calls + 1
    assert CredentialGrant.objects.get().times_served == threads_count


def test_a_request_waits_for_another_process_call_in_flight(credentials, user, alibaba):
    """The cross-process lock: while another worker holds it, nobody else calls STS."""
    lock_key = credentials_cache_key(user=user, scope="readwrite") + ":lock"
    assert cache.add(lock_key, "another-process", timeout=30)
    calls = alibaba.sts.assume_role_calls
    result: list[requests.Response] = []

    def wait() -> None:
        try:
            result.append(credentials.get(user))
        finally:
            connections.close_all()

    waiter = threading.Thread(target=wait)
    waiter.start()
    waiter.join(timeout=0.5)
    assert waiter.is_alive()
    assert alibaba.sts.assume_role_calls == calls
    cache.delete(lock_key)  # the other worker gave up without a result
    waiter.join(timeout=30)
    assert result[0].status_code == 200
    assert alibaba.sts.assume_role_calls == calls + 1


def test_cached_credentials_are_encrypted_at_rest(credentials, user):
    body = credentials.get(user).json()
    key = credentials_cache_key(user=user, scope="readwrite")
    stored = cache.get(key)
    assert isinstance(stored, str)
    for secret in (body["AccessKeySecret"], body["SecurityToken"], body["AccessKeyId"]):
        assert secret not in stored
    if django_settings.REDIS_URL:
        raw = redis.Redis.from_url(django_settings.REDIS_URL).get(cache.make_and_validate_key(key))
        assert raw is not None
        for secret in (body["AccessKeySecret"], body["SecurityToken"], body["AccessKeyId"]):
            assert secret.encode() not in raw


def test_an_entry_moved_to_another_users_key_is_not_served(credentials, user, other_user, alibaba):
    mine = credentials.get(user).json()
    stored = cache.get(credentials_cache_key(user=user, scope="readwrite"))
    cache.set(credentials_cache_key(user=other_user, scope="readwrite"), stored, timeout=600)
    theirs = credentials.get(other_user).json()
    assert theirs["AccessKeyId"] != mine["AccessKeyId"]
    assert theirs["Prefix"] == f"users/{other_user.public_id}/"


def test_suspension_is_immediate_and_drops_cached_credentials(credentials, user, alibaba):
    first = credentials.get(user).json()
    credentials.get(user, "read")
    keys = [credentials_cache_key(user=user, scope=s) for s in ("readwrite", "read")]
    assert all(cache.get(k) is not None for k in keys)

    user_suspend(user=user, reason="abuse")
    assert all(cache.get(k) is None for k in keys)
    calls = alibaba.sts.assume_role_calls
    response = credentials.get(user)  # the same, still valid access token
    assert response.status_code == 403
    assert response.json() == {
        "StatusCode": 403,
        "ErrorCode": "account_suspended",
        "ErrorMessage": "This account is suspended. Contact support.",
    }
    assert alibaba.sts.assume_role_calls == calls

    user_unsuspend(user=user)
    again = credentials.get(user).json()
    assert alibaba.sts.assume_role_calls == calls + 1
    assert again["AccessKeyId"] != first["AccessKeyId"]


def test_throttled_per_user(credentials, user, other_user, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "credentials": "2/min",
        },
    }
    assert [credentials.get(user).status_code for _ in range(3)] == [200, 200, 429]
    limited = credentials.get(user)
    assert limited.json()["StatusCode"] == 429
    assert limited.json()["ErrorCode"] == "throttled"
    assert int(limited.headers["Retry-After"]) > 0
    assert credentials.get(other_user).status_code == 200
