"""Every way STS can fail ends in a 503 with Retry-After and a clear code: never a 500, never
STS's own message, never a secret, in the response or in the logs."""

from __future__ import annotations

import logging
import socket
import time

import pytest
from django.core.cache import cache

from tokens.models import CredentialGrant

pytestmark = pytest.mark.django_db(transaction=True)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_unavailable(response, code: str, retry_after: str, message: str) -> None:
    assert response.status_code == 503
    assert response.headers["Retry-After"] == retry_after
    assert response.headers["Cache-Control"] == "no-store"
    assert response.json() == {"StatusCode": 503, "ErrorCode": code, "ErrorMessage": message}


UNAVAILABLE = "Temporary credentials cannot be issued right now. Retry later."
REFUSED = "The credentials service is misconfigured and cannot issue credentials. Retry later."


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


def assert_no_secrets_logged(logs, settings) -> None:
    text = logs.text
    assert settings.ALIBABA_ACCESS_KEY_SECRET not in text
    assert "string to sign" not in text.lower()


def test_sts_unreachable(credentials, user, settings, logs):
    settings.STS_ENDPOINT = f"http://127.0.0.1:{closed_port()}"
    response = credentials.get(user)
    assert_unavailable(response, "sts_unavailable", "5", UNAVAILABLE)
    assert CredentialGrant.objects.count() == 0
    assert "AssumeRole failed: unreachable (STS code SDK.HttpError" in logs.text
    assert_no_secrets_logged(logs, settings)


def test_sts_too_slow(credentials, user, alibaba, settings, logs):
    settings.STS_TIMEOUT_SECONDS = 0.3
    alibaba.sts.delay_seconds = 1.0
    try:
        response = credentials.get(user)
    finally:
        alibaba.sts.delay_seconds = 0.0
        # The emulator still answers the abandoned call after its delay; let it finish here so
        # it cannot consume another test's hook (throttle_next) on the shared emulator.
        time.sleep(1.0)
    assert_unavailable(response, "sts_timeout", "5", "STS did not answer in time. Retry later.")
    assert "AssumeRole failed: timeout" in logs.text


def test_sts_throttling(credentials, user, alibaba, logs, settings):
    alibaba.sts.throttle_next(1)
    response = credentials.get(user)
    assert_unavailable(
        response,
        "sts_throttled",
        "2",
        "Too many credential requests are reaching STS right now. Retry in a few seconds.",
    )
    assert "AssumeRole failed: throttled (STS code Throttling.User, HTTP 400" in logs.text
    # STS's own words stay out of the logs too.
    assert "flow control" not in logs.text
    assert_no_secrets_logged(logs, settings)


def test_a_failure_is_remembered_briefly_so_a_stampede_makes_one_call(credentials, user, alibaba):
    alibaba.sts.throttle_next(1)
    calls = alibaba.sts.assume_role_calls
    first = credentials.get(user)
    second = credentials.get(user)
    assert first.json()["ErrorCode"] == second.json()["ErrorCode"] == "sts_throttled"
    assert alibaba.sts.assume_role_calls == calls + 1
    cache.clear()  # the few seconds pass
    assert credentials.get(user).status_code == 200


@pytest.mark.parametrize("mode", ["InternalError", "ServiceUnavailable"])
def test_sts_server_errors(credentials, user, alibaba, mode):
    alibaba.sts.set_failure_mode(mode)
    try:
        response = credentials.get(user)
    finally:
        alibaba.sts.set_failure_mode(None)
    assert_unavailable(response, "sts_unavailable", "5", UNAVAILABLE)


def test_unknown_role_is_refused_without_sts_text(credentials, user, settings, logs):
    settings.STS_ROLE_ARN = "acs:ram::1000000000000001:role/no-such-role"
    response = credentials.get(user)
    assert_unavailable(response, "sts_refused", "60", REFUSED)
    assert "AssumeRole failed: refused (STS code EntityNotExist.Role, HTTP 404" in logs.text
    assert "no-such-role" not in response.text


def test_wrong_secret_is_refused_without_leaking(credentials, user, settings, logs):
    settings.ALIBABA_ACCESS_KEY_SECRET = "a-wrong-secret-that-must-not-leak"
    response = credentials.get(user)
    assert_unavailable(response, "sts_refused", "60", REFUSED)
    assert "a-wrong-secret-that-must-not-leak" not in response.text
    assert "a-wrong-secret-that-must-not-leak" not in logs.text
    assert "AssumeRole failed: refused (STS code InvalidAccessKeySecret, HTTP 400" in logs.text
    assert_no_secrets_logged(logs, settings)


def test_unknown_access_key_is_refused(credentials, user, settings):
    settings.ALIBABA_ACCESS_KEY_ID = "LTAInobodyHasThisKey"
    assert_unavailable(credentials.get(user), "sts_refused", "60", REFUSED)


def test_success_logs_no_secret(credentials, user, logs):
    body = credentials.get(user).json()
    credentials.get(user)
    for secret in (body["AccessKeySecret"], body["SecurityToken"]):
        assert secret not in logs.text


def test_broken_template_is_503_not_500(credentials, user, settings, tmp_path, logs):
    (tmp_path / "readwrite.json").write_text("{not json")
    settings.POLICY_TEMPLATES_DIR = tmp_path
    response = credentials.get(user)
    assert_unavailable(
        response,
        "policy_unavailable",
        "60",
        "The credentials service is misconfigured. Retry later.",
    )
    assert 'Cannot render the session policy: Policy template "readwrite"' in logs.text
