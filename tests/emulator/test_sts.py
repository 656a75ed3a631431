"""STS AssumeRole (emulator/sts/) driven by the unmodified official SDKs over real HTTP.

aliyun-python-sdk-core/-sts (RPC, HMAC-SHA1) and alibabacloud-sts20150401 (ACS3-HMAC-SHA256 by
default, and the RPC scheme with signature_algorithm='v2') call an in-process emulator on a free
port, and the credentials it issues are then used with oss2.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

import oss2
import pytest
from alibabacloud_sts20150401 import models as sts_models
from alibabacloud_sts20150401.client import Client as StsClient
from alibabacloud_tea_openapi import models as openapi_models
from alibabacloud_tea_openapi.exceptions import ClientException as NewClientException
from alibabacloud_tea_openapi.utils import Utils as OpenApiUtils
from aliyunsdkcore.acs_exception.exceptions import ClientException as OldClientException
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.auth.composer import rpc_signature_composer
from aliyunsdkcore.auth.composer.rpc_signature_composer import get_signed_url
from aliyunsdkcore.auth.credentials import StsTokenCredential
from aliyunsdkcore.client import AcsClient
from aliyunsdksts.request.v20150401.AssumeRoleRequest import AssumeRoleRequest
from darabonba.request import DaraRequest

from emulator import Emulator
from emulator.clock import Clock
from emulator.config import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_ROLE_ARN,
    DEFAULT_ROOT_ACCESS_KEY_ID,
    DEFAULT_ROOT_ACCESS_KEY_SECRET,
    STATS_PATH,
    EmulatorConfig,
    Role,
    default_role_policy,
)
from emulator.sts import CredentialError, Principal, StsService, format_expiration

REGION = "cn-hangzhou"
LONG_ROLE = f"acs:ram::{DEFAULT_ACCOUNT_ID}:role/long-sessions"
UNTRUSTED_ROLE = f"acs:ram::{DEFAULT_ACCOUNT_ID}:role/other-account-only"
ROLE_POLICY = default_role_policy(("app-uploads",))
SESSION_POLICY = {
    "Version": "1",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["oss:PutObject", "oss:GetObject"],
            "Resource": ["acs:oss:*:*:app-uploads/users/42/*"],
        }
    ],
}
SEALING_KEY = b"k" * 32


def make_config() -> EmulatorConfig:
    return EmulatorConfig(
        port=0,
        roles=(
            Role(arn=DEFAULT_ROLE_ARN, policy=ROLE_POLICY),
            Role(arn=LONG_ROLE, policy=ROLE_POLICY, max_session_duration=7200),
            Role(arn=UNTRUSTED_ROLE, policy=ROLE_POLICY, trusted_accounts=("9999",)),
        ),
    )


def _reset(emu: Emulator) -> None:
    emu.clock.reset()
    emu.sts.set_failure_mode(None)
    emu.sts.throttle_next(0)
    emu.sts.rate_limit_per_second = None
    emu.sts.rate_limit_window_seconds = 1.0
    emu.sts.delay_seconds = 0.0


@pytest.fixture(scope="module")
def shared_emulator() -> Iterator[Emulator]:
    # One emulator for the module (starting and stopping one per test costs more than the tests);
    # every test gets it with the clock and all test hooks reset.
    with Emulator(make_config()) as emu:
        yield emu


@pytest.fixture
def emulator(shared_emulator) -> Iterator[Emulator]:
    _reset(shared_emulator)
    yield shared_emulator
    _reset(shared_emulator)


@pytest.fixture
def calls(service):
    """AssumeRole calls received since the test started."""
    before = service.assume_role_calls
    return lambda: service.assume_role_calls - before


@pytest.fixture
def clock(emulator) -> Clock:
    return emulator.clock


@pytest.fixture
def service(emulator) -> StsService:
    return emulator.sts


@pytest.fixture
def endpoint(emulator) -> str:
    return emulator.endpoint.removeprefix("http://")


def old_assume(
    endpoint: str,
    *,
    role_arn: str = DEFAULT_ROLE_ARN,
    session_name: str = "user-42",
    duration: int | str | None = 900,
    policy: str | None = None,
    ak: str = DEFAULT_ROOT_ACCESS_KEY_ID,
    secret: str = DEFAULT_ROOT_ACCESS_KEY_SECRET,
    client: AcsClient | None = None,
) -> dict:
    client = client or AcsClient(ak, secret, REGION, auto_retry=False)
    request = AssumeRoleRequest()
    request.set_endpoint(f"http://{endpoint}")
    request.set_RoleArn(role_arn)
    request.set_RoleSessionName(session_name)
    if duration is not None:
        request.set_DurationSeconds(duration)
    if policy is not None:
        request.set_Policy(policy)
    return json.loads(client.do_action_with_exception(request))


def new_client(
    endpoint: str,
    *,
    algorithm: str | None = None,
    ak: str = DEFAULT_ROOT_ACCESS_KEY_ID,
    secret: str = DEFAULT_ROOT_ACCESS_KEY_SECRET,
) -> StsClient:
    config = openapi_models.Config(
        access_key_id=ak,
        access_key_secret=secret,
        endpoint=endpoint,
        protocol="http",
        signature_algorithm=algorithm,
    )
    return StsClient(config)


def old_error(endpoint: str, **kwargs) -> ServerException:
    with pytest.raises(ServerException) as info:
        old_assume(endpoint, **kwargs)
    return info.value


# --- success -----------------------------------------------------------------------------------


def test_old_sdk_assume_role_with_session_policy(endpoint, service, clock, calls):
    policy = json.dumps(SESSION_POLICY)
    before = int(clock.now())
    body = old_assume(endpoint, policy=policy, duration=1800)
    after = int(clock.now())
    assert set(body) == {"RequestId", "AssumedRoleUser", "Credentials"}
    creds = body["Credentials"]
    assert set(creds) == {"AccessKeyId", "AccessKeySecret", "SecurityToken", "Expiration"}
    assert creds["AccessKeyId"].startswith("STS.")
    assert creds["Expiration"] in {format_expiration(t + 1800) for t in range(before, after + 1)}
    assert body["AssumedRoleUser"]["Arn"] == (
        f"acs:ram::{DEFAULT_ACCOUNT_ID}:assumed-role/app-uploader/user-42"
    )
    assert body["AssumedRoleUser"]["AssumedRoleId"].endswith(":user-42")
    assert calls() == 1

    principal = service.resolve(creds["AccessKeyId"], creds["SecurityToken"])
    assert principal == Principal(
        access_key_id=creds["AccessKeyId"],
        access_key_secret=creds["AccessKeySecret"],
        is_root=False,
        role_arn=DEFAULT_ROLE_ARN,
        session_name="user-42",
        policies=(("role", ROLE_POLICY), ("session", SESSION_POLICY)),
        expiration=principal.expiration,
    )
    assert format_expiration(principal.expiration) == creds["Expiration"]


def test_the_assume_role_count_is_served_over_http_for_other_processes(emulator, endpoint):
    # A fleet of app servers in other processes is counted here (scripts/fleet_stack.py).
    def served() -> int:
        with urllib.request.urlopen(emulator.endpoint + STATS_PATH, timeout=5) as response:
            assert response.headers["Content-Type"] == "application/json"
            return json.loads(response.read())["assume_role_calls"]

    before = served()
    assert before == emulator.sts.assume_role_calls
    old_assume(endpoint)
    old_error(endpoint, role_arn="acs:ram::1:role/nobody")  # refused calls count too
    assert served() == before + 2


def test_without_policy_the_session_gets_the_role_policy_only(endpoint, service):
    body = old_assume(endpoint, duration=None)
    creds = body["Credentials"]
    principal = service.resolve(creds["AccessKeyId"], creds["SecurityToken"])
    assert principal.policies == (("role", ROLE_POLICY),)
    # default duration is 3600 seconds
    assert principal.expiration - service._clock.now() == pytest.approx(3600, abs=5)


@pytest.mark.parametrize("algorithm", [None, "v2"])
def test_new_sdk_assume_role(endpoint, service, algorithm, calls):
    client = new_client(endpoint, algorithm=algorithm)
    request = sts_models.AssumeRoleRequest(
        role_arn=LONG_ROLE,
        role_session_name="user.42@app_x-y",
        duration_seconds=7200,
        policy=json.dumps(SESSION_POLICY, indent=2),  # spaces and newlines must sign correctly
    )
    response = client.assume_role(request)
    assert response.status_code == 200
    creds = response.body.credentials
    assert creds.access_key_id.startswith("STS.")
    assert response.body.assumed_role_user.arn == (
        f"acs:ram::{DEFAULT_ACCOUNT_ID}:assumed-role/long-sessions/user.42@app_x-y"
    )
    principal = service.resolve(creds.access_key_id, creds.security_token)
    assert principal.role_arn == LONG_ROLE
    assert principal.policies[1] == ("session", SESSION_POLICY)
    assert format_expiration(principal.expiration) == creds.expiration
    assert calls() == 1


# --- validation errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"session_name": "a"}, 400, "InvalidParameter.RoleSessionName"),
        ({"session_name": "x" * 65}, 400, "InvalidParameter.RoleSessionName"),
        ({"session_name": "user 42"}, 400, "InvalidParameter.RoleSessionName"),
        ({"session_name": "user/42"}, 400, "InvalidParameter.RoleSessionName"),
        ({"duration": 899}, 400, "InvalidParameter.DurationSeconds"),
        ({"duration": 3601}, 400, "InvalidParameter.DurationSeconds"),
        ({"duration": "soon"}, 400, "InvalidParameter.DurationSeconds"),
        ({"role_arn": LONG_ROLE, "duration": 7201}, 400, "InvalidParameter.DurationSeconds"),
        ({"policy": "{not json"}, 400, "InvalidParameter.PolicyGrammar"),
        ({"policy": '{"Version": "1", "Statement": [{}]}'}, 400, "InvalidParameter.PolicyGrammar"),
        ({"policy": " " * 2049}, 400, "InvalidParameter.PolicySize"),
        ({"role_arn": "arn:aws:iam::1:role/x"}, 400, "InvalidParameter.RoleArn"),
        ({"role_arn": "acs:ram::abc:role/x"}, 400, "InvalidParameter.RoleArn"),
        ({"role_arn": f"acs:ram::{DEFAULT_ACCOUNT_ID}:role/nope"}, 404, "EntityNotExist.Role"),
        ({"role_arn": "acs:ram::123:role/app-uploader"}, 404, "EntityNotExist.Role"),
        ({"role_arn": UNTRUSTED_ROLE}, 403, "NoPermission"),
        ({"ak": "LTAIunknown"}, 404, "InvalidAccessKeyId.NotFound"),
    ],
)
def test_old_sdk_validation_errors(endpoint, service, kwargs, status, code, calls):
    error = old_error(endpoint, **kwargs)
    assert (error.get_http_status(), error.get_error_code()) == (status, code)
    assert error.get_request_id()
    assert calls() == 1


def test_validation_messages(endpoint):
    assert old_error(endpoint, duration=899).get_error_msg() == (
        "The Min/Max value of DurationSeconds is 900/3600 seconds."
    )
    arn = f"acs:ram::{DEFAULT_ACCOUNT_ID}:role/nope"
    assert old_error(endpoint, role_arn=arn).get_error_msg() == f"The role not exists: {arn}."
    assert old_error(endpoint, policy=" " * 2049).get_error_msg() == (
        "The size of the policy must be no more than 2048 characters (it has 2049)."
    )


@pytest.mark.parametrize("algorithm", [None, "v2"])
def test_new_sdk_validation_error(endpoint, algorithm):
    client = new_client(endpoint, algorithm=algorithm)
    request = sts_models.AssumeRoleRequest(
        role_arn=DEFAULT_ROLE_ARN, role_session_name="u42", duration_seconds=60
    )
    with pytest.raises(NewClientException) as info:
        client.assume_role(request)
    assert (info.value.status_code, info.value.code) == (400, "InvalidParameter.DurationSeconds")


def test_error_body_has_the_real_shape(endpoint):
    request = urllib.request.Request(
        f"http://{endpoint}/?Action=AssumeRole&Version=2015-04-01", method="POST", data=b""
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == 400
    assert info.value.headers["Content-Type"] == "application/json;charset=utf-8"
    body = json.loads(info.value.read())
    assert set(body) == {"RequestId", "HostId", "Code", "Message"}
    assert (body["Code"], body["Message"]) == (
        "MissingSignature",
        "Signature is mandatory for this action.",
    )
    assert body["RequestId"] == info.value.headers["x-acs-request-id"]


# --- signatures and callers --------------------------------------------------------------------


def test_wrong_secret_old_sdk(endpoint, service, calls):
    # The SDK splits SignatureDoesNotMatch's message on ":"; when the server's string to sign
    # equals its own it reports the wrong secret, as it does against the real STS.
    error = old_error(endpoint, secret="wrong-secret")
    assert error.get_http_status() == 400
    assert error.get_error_code() == "InvalidAccessKeySecret"
    assert calls() == 1


def test_wrong_secret_raw_message_contains_string_to_sign(endpoint):
    params = {
        "Action": "AssumeRole",
        "Version": "2015-04-01",
        "RoleArn": DEFAULT_ROLE_ARN,
        "RoleSessionName": "u42",
    }
    url, string_to_sign = get_signed_url(
        params, DEFAULT_ROOT_ACCESS_KEY_ID, "wrong-secret", "JSON", "POST", {}
    )
    request = urllib.request.Request(f"http://{endpoint}{url}", method="POST", data=b"")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    body = json.loads(info.value.read())
    assert (info.value.code, body["Code"]) == (400, "SignatureDoesNotMatch")
    assert body["Message"] == (
        "Specified signature is not matched with our calculation. server string to sign is:"
        + string_to_sign
    )
    assert body["Message"].split(":")[1] == string_to_sign


@pytest.mark.parametrize("algorithm", [None, "v2"])
def test_wrong_secret_new_sdk(endpoint, algorithm):
    client = new_client(endpoint, algorithm=algorithm, secret="wrong-secret")
    request = sts_models.AssumeRoleRequest(role_arn=DEFAULT_ROLE_ARN, role_session_name="u42")
    with pytest.raises(NewClientException) as info:
        client.assume_role(request)
    assert (info.value.status_code, info.value.code) == (400, "SignatureDoesNotMatch")
    assert "server string to sign is:" in info.value.message


def test_replayed_request_is_refused(endpoint, service):
    params = {
        "Action": "AssumeRole",
        "Version": "2015-04-01",
        "RoleArn": DEFAULT_ROLE_ARN,
        "RoleSessionName": "u42",
    }
    url, _ = get_signed_url(
        params, DEFAULT_ROOT_ACCESS_KEY_ID, DEFAULT_ROOT_ACCESS_KEY_SECRET, "JSON", "POST", {}
    )
    first = urllib.request.urlopen(
        urllib.request.Request(f"http://{endpoint}{url}", method="POST", data=b""), timeout=5
    )
    assert first.status == 200
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(
            urllib.request.Request(f"http://{endpoint}{url}", method="POST", data=b""), timeout=5
        )
    body = json.loads(info.value.read())
    assert (info.value.code, body["Code"]) == (400, "SignatureNonceUsed")


def test_parameters_in_a_form_body_are_signed_and_used(endpoint, service):
    body_params = {"RoleArn": DEFAULT_ROLE_ARN, "RoleSessionName": "from-body"}
    url, _ = get_signed_url(
        {"Action": "AssumeRole", "Version": "2015-04-01"},
        DEFAULT_ROOT_ACCESS_KEY_ID,
        DEFAULT_ROOT_ACCESS_KEY_SECRET,
        "JSON",
        "POST",
        body_params,
    )
    data = urllib.parse.urlencode(body_params).encode()
    request = urllib.request.Request(
        f"http://{endpoint}{url}",
        method="POST",
        data=data,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    body = json.loads(urllib.request.urlopen(request, timeout=5).read())
    assert body["AssumedRoleUser"]["Arn"].endswith("/app-uploader/from-body")
    # a body parameter changed after signing breaks the signature
    tampered = urllib.parse.urlencode({**body_params, "RoleSessionName": "other"}).encode()
    url2, _ = get_signed_url(
        {"Action": "AssumeRole", "Version": "2015-04-01"},
        DEFAULT_ROOT_ACCESS_KEY_ID,
        DEFAULT_ROOT_ACCESS_KEY_SECRET,
        "JSON",
        "POST",
        body_params,
    )
    request = urllib.request.Request(
        f"http://{endpoint}{url2}",
        method="POST",
        data=tampered,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert json.loads(info.value.read())["Code"] == "SignatureDoesNotMatch"


@pytest.mark.parametrize("algorithm", [None, "v2"])
def test_skewed_clock_is_refused(endpoint, clock, algorithm):
    clock.advance(16 * 60)
    with pytest.raises(ServerException) as info:
        old_assume(endpoint)
    assert (info.value.get_http_status(), info.value.get_error_code()) == (
        400,
        "InvalidTimeStamp.Expired",
    )
    client = new_client(endpoint, algorithm=algorithm)
    request = sts_models.AssumeRoleRequest(role_arn=DEFAULT_ROLE_ARN, role_session_name="u42")
    with pytest.raises(NewClientException) as info2:
        client.assume_role(request)
    assert info2.value.code == "InvalidTimeStamp.Expired"


def test_sts_credentials_cannot_assume_a_role(endpoint):
    creds = old_assume(endpoint)["Credentials"]
    client = AcsClient(
        region_id=REGION,
        credential=StsTokenCredential(
            creds["AccessKeyId"], creds["AccessKeySecret"], creds["SecurityToken"]
        ),
        auto_retry=False,
    )
    error = old_error(endpoint, client=client)
    assert (error.get_http_status(), error.get_error_code()) == (403, "NoPermission")


# --- test hooks --------------------------------------------------------------------------------


def test_throttle_next(endpoint, service, calls):
    service.throttle_next(2)
    for _ in range(2):
        error = old_error(endpoint)
        assert (error.get_http_status(), error.get_error_code()) == (400, "Throttling.User")
        assert error.get_error_msg() == "Request was denied due to user flow control."
    assert old_assume(endpoint)["Credentials"]["AccessKeyId"].startswith("STS.")
    assert calls() == 3


def test_failure_mode(endpoint, service):
    service.set_failure_mode("ServiceUnavailable")
    error = old_error(endpoint)
    assert (error.get_http_status(), error.get_error_code()) == (503, "ServiceUnavailable")
    service.set_failure_mode("Throttling.User")
    assert old_error(endpoint).get_error_code() == "Throttling.User"
    service.set_failure_mode(None)
    assert old_assume(endpoint)["Credentials"]
    with pytest.raises(ValueError):
        service.set_failure_mode("NoSuchMode")


def test_failures_need_a_valid_signature_first(endpoint, service):
    service.set_failure_mode("Throttling.User")
    assert old_error(endpoint, secret="nope").get_error_code() == "InvalidAccessKeySecret"


def test_rate_limit(endpoint, service):
    service.rate_limit_per_second = 1
    service.rate_limit_window_seconds = 3600  # one call per hour: no dependence on speed
    assert old_assume(endpoint)["Credentials"]
    error = old_error(endpoint)
    assert (error.get_http_status(), error.get_error_code()) == (400, "Throttling.User")


def test_delay_makes_the_client_time_out(endpoint, service):
    service.delay_seconds = 1.0
    client = AcsClient(
        DEFAULT_ROOT_ACCESS_KEY_ID,
        DEFAULT_ROOT_ACCESS_KEY_SECRET,
        REGION,
        auto_retry=False,
        timeout=0.2,
    )
    with pytest.raises(OldClientException) as info:
        old_assume(endpoint, client=client)
    assert info.value.get_error_code() == "SDK.HttpError"
    assert "timed out" in info.value.get_error_msg()


def test_is_sts_request(service):
    assert service.is_sts_request("POST", "/", {"Action": "AssumeRole"}, {})
    assert service.is_sts_request("POST", "/", {}, {"X-Acs-Action": "AssumeRole"})
    assert not service.is_sts_request("GET", "/bucket/key", {"uploads": ""}, {"Date": "x"})


# --- resolve -----------------------------------------------------------------------------------


def issued(service: StsService, **kwargs) -> dict:
    args = {"role_arn": DEFAULT_ROLE_ARN, "session_name": "user-42", "duration_seconds": 900}
    return service.issue_credentials(**{**args, **kwargs})["Credentials"]


def test_resolve_root_key(service):
    principal = service.resolve(DEFAULT_ROOT_ACCESS_KEY_ID, None)
    assert principal == Principal(
        access_key_id=DEFAULT_ROOT_ACCESS_KEY_ID,
        access_key_secret=DEFAULT_ROOT_ACCESS_KEY_SECRET,
        is_root=True,
        role_arn=None,
        session_name=None,
        policies=(),
        expiration=None,
    )


def credential_error(service, key, token) -> CredentialError:
    with pytest.raises(CredentialError) as info:
        service.resolve(key, token)
    assert info.value.status == 403
    return info.value


def test_resolve_unknown_key(service):
    error = credential_error(service, "LTAIunknown", None)
    assert (error.code, error.message) == (
        "InvalidAccessKeyId",
        "The OSS Access Key Id you provided does not exist in our records.",
    )
    creds = issued(service)
    # an STS key without its token is unknown too
    assert credential_error(service, creds["AccessKeyId"], None).code == "InvalidAccessKeyId"


def test_resolve_expired_token(service, clock):
    creds = issued(service)
    clock.advance(899)
    assert service.resolve(creds["AccessKeyId"], creds["SecurityToken"]).session_name == "user-42"
    clock.advance(1)
    error = credential_error(service, creds["AccessKeyId"], creds["SecurityToken"])
    assert (error.code, error.message) == (
        "SecurityTokenExpired",
        "The security token you provided has expired.",
    )


def test_resolve_tampered_and_mismatched_tokens(service):
    creds = issued(service)
    token = creds["SecurityToken"]
    middle = len(token) // 2
    flipped = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]
    for bad in [flipped, token[:-4], "garbage", token + "x"]:
        error = credential_error(service, creds["AccessKeyId"], bad)
        assert (error.code, error.message) == (
            "InvalidSecurityToken",
            "The security token you provided is invalid.",
        )
    other = issued(service, session_name="user-43")
    error = credential_error(service, creds["AccessKeyId"], other["SecurityToken"])
    assert error.code == "InvalidSecurityToken"
    # root key with a token that is not its own
    assert credential_error(service, DEFAULT_ROOT_ACCESS_KEY_ID, token).code == (
        "InvalidSecurityToken"
    )


def test_token_survives_restart_with_the_same_sealing_key():
    clock = Clock()
    first = StsService(make_config(), clock, SEALING_KEY)
    creds = issued(first, policy=json.dumps(SESSION_POLICY))
    again = StsService(make_config(), clock, SEALING_KEY)
    principal = again.resolve(creds["AccessKeyId"], creds["SecurityToken"])
    assert principal.access_key_secret == creds["AccessKeySecret"]
    assert principal.policies == (("role", ROLE_POLICY), ("session", SESSION_POLICY))
    other_key = StsService(make_config(), clock, b"another-key")
    error = credential_error(other_key, creds["AccessKeyId"], creds["SecurityToken"])
    assert error.code == "InvalidSecurityToken"


def test_token_survives_an_emulator_restart_on_the_same_data_dir(tmp_path):
    config = EmulatorConfig(port=0, data_dir=tmp_path)
    with Emulator(config) as emu:
        endpoint = emu.endpoint.removeprefix("http://")
        creds = old_assume(endpoint, policy=json.dumps(SESSION_POLICY))["Credentials"]
        sts_bucket(emu, creds, "v1").put_object("users/42/a.txt", b"kept")
    with Emulator(config) as emu:
        bucket = sts_bucket(emu, creds, "v4")
        assert bucket.get_object("users/42/a.txt").read() == b"kept"


# --- the issued credentials used with oss2 -----------------------------------------------------


def sts_bucket(emu: Emulator, creds: dict, auth_version: str) -> oss2.Bucket:
    auth = oss2.StsAuth(
        creds["AccessKeyId"],
        creds["AccessKeySecret"],
        creds["SecurityToken"],
        auth_version=auth_version,
    )
    return oss2.Bucket(auth, emu.endpoint, "app-uploads", region=REGION)


def oss_error(call) -> oss2.exceptions.OssError:
    with pytest.raises(oss2.exceptions.OssError) as info:
        call()
    return info.value


@pytest.mark.parametrize("auth_version", ["v1", "v4"])
def test_oss_enforces_the_session_policy_and_expiry(emulator, endpoint, clock, auth_version):
    creds = old_assume(endpoint, policy=json.dumps(SESSION_POLICY), duration=900)["Credentials"]
    bucket = sts_bucket(emulator, creds, auth_version)
    assert bucket.put_object("users/42/photo.jpg", b"jpeg").status == 200
    assert bucket.get_object("users/42/photo.jpg").read() == b"jpeg"
    error = oss_error(lambda: bucket.put_object("users/43/photo.jpg", b"x"))
    assert (error.status, error.code) == (403, "AccessDenied")
    # the role allows DeleteObject, the session policy does not: the intersection decides
    error = oss_error(lambda: bucket.delete_object("users/42/photo.jpg"))
    assert (error.status, error.code) == (403, "AccessDenied")
    # Credentials issued 1000 s ago for 900 s: expired now, without skewing the request clock.
    clock.advance(-1000)
    old = issued(emulator.sts, policy=json.dumps(SESSION_POLICY))
    clock.reset()
    expired = sts_bucket(emulator, old, auth_version)
    error = oss_error(lambda: expired.get_object("users/42/photo.jpg"))
    assert (error.status, error.code) == (403, "SecurityTokenExpired")


@pytest.mark.parametrize("auth_version", ["v1", "v4"])
def test_oss_refuses_forged_tokens(emulator, endpoint, auth_version):
    creds = old_assume(endpoint)["Credentials"]
    token = creds["SecurityToken"]
    middle = len(token) // 2
    forged = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]
    bucket = sts_bucket(emulator, {**creds, "SecurityToken": forged}, auth_version)
    error = oss_error(lambda: bucket.put_object("users/42/x", b"x"))
    assert (error.status, error.code) == (403, "InvalidSecurityToken")
    other = old_assume(endpoint, session_name="someone-else")["Credentials"]
    bucket = sts_bucket(emulator, {**creds, "SecurityToken": other["SecurityToken"]}, auth_version)
    error = oss_error(lambda: bucket.put_object("users/42/x", b"x"))
    assert (error.status, error.code) == (403, "InvalidSecurityToken")


def test_token_reveals_neither_secret_nor_policy(service):
    creds = issued(service, policy=json.dumps(SESSION_POLICY))
    token = creds["SecurityToken"]
    raw = base64.urlsafe_b64decode(token[4:] + "=" * (-len(token[4:]) % 4))
    assert creds["AccessKeySecret"].encode() not in raw
    assert b"users/42" not in raw
    assert creds["AccessKeySecret"] not in token


def test_empty_policy_parameter_counts_as_none(endpoint, service):
    creds = old_assume(endpoint, policy="")["Credentials"]
    principal = service.resolve(creds["AccessKeyId"], creds["SecurityToken"])
    assert principal.policies == (("role", ROLE_POLICY),)


# --- ACS3 requests signed by the SDK's own signer, sent raw -------------------------------------


def acs3_request(endpoint: str, *, secret: str = DEFAULT_ROOT_ACCESS_KEY_SECRET, extra=None):
    """An AssumeRole request signed with alibabacloud_tea_openapi's get_authorization."""
    request = DaraRequest()
    request.method = "POST"
    request.pathname = "/"
    request.query = {"RoleArn": DEFAULT_ROLE_ARN, "RoleSessionName": "raw-acs3"}
    request.headers = {
        "host": endpoint,
        "x-acs-version": "2015-04-01",
        "x-acs-action": "AssumeRole",
        "x-acs-date": OpenApiUtils.get_timestamp(),
        "x-acs-signature-nonce": OpenApiUtils.get_nonce(),
        "x-acs-content-sha256": hashlib.sha256(b"").hexdigest(),
    }
    request.headers["Authorization"] = OpenApiUtils.get_authorization(
        request,
        "ACS3-HMAC-SHA256",
        hashlib.sha256(b"").hexdigest(),
        DEFAULT_ROOT_ACCESS_KEY_ID,
        secret,
    )
    headers = {**request.headers, **(extra or {})}
    del headers["host"]  # urllib sends the same Host itself
    query = urllib.parse.urlencode(request.query)
    return urllib.request.Request(
        f"http://{endpoint}/?{query}", method="POST", data=b"", headers=headers
    )


def raw_error(request) -> tuple[int, dict]:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    return info.value.code, json.loads(info.value.read())


def test_acs3_raw_request_and_replay(endpoint):
    request = acs3_request(endpoint)
    with urllib.request.urlopen(request, timeout=5) as response:
        body = json.loads(response.read())
    assert body["AssumedRoleUser"]["Arn"].endswith("/app-uploader/raw-acs3")
    status, error = raw_error(request)
    assert (status, error["Code"]) == (400, "SignatureNonceUsed")


def test_acs3_unsigned_acs_header_is_refused(endpoint):
    status, error = raw_error(acs3_request(endpoint, extra={"x-acs-security-token": "x"}))
    assert (status, error["Code"]) == (400, "IncompleteSignature")
    assert error["Message"].endswith("header x-acs-security-token must be signed.")


def test_acs3_tampered_parameter_breaks_the_signature(endpoint):
    request = acs3_request(endpoint)
    request.full_url = request.full_url.replace("raw-acs3", "raw-acs4")
    status, error = raw_error(request)
    assert (status, error["Code"]) == (400, "SignatureDoesNotMatch")
    assert error["Message"].startswith(
        "Specified signature is not matched with our calculation. server string to sign is:"
        "ACS3-HMAC-SHA256\n"
    )


def test_new_sdk_with_sts_credentials_cannot_assume_a_role(endpoint):
    creds = old_assume(endpoint)["Credentials"]
    config = openapi_models.Config(
        access_key_id=creds["AccessKeyId"],
        access_key_secret=creds["AccessKeySecret"],
        security_token=creds["SecurityToken"],
        endpoint=endpoint,
        protocol="http",
    )
    request = sts_models.AssumeRoleRequest(role_arn=DEFAULT_ROLE_ARN, role_session_name="u42")
    with pytest.raises(NewClientException) as info:
        StsClient(config).assume_role(request)
    assert (info.value.status_code, info.value.code) == (403, "NoPermission")


def signed_rpc_url(params: dict, secret: str) -> str:
    """Sign fixed parameters (nonce included) with aliyun-python-sdk-core's own RPC helpers."""
    compose = getattr(rpc_signature_composer, "__compose_string_to_sign")
    sign = getattr(rpc_signature_composer, "__get_signature")
    signature = sign(compose("POST", params), secret)
    return "/?" + urllib.parse.urlencode({**params, "Signature": signature})


def test_a_forged_request_does_not_burn_the_nonce(endpoint):
    params = {
        "Action": "AssumeRole",
        "Version": "2015-04-01",
        "Format": "JSON",
        "RoleArn": DEFAULT_ROLE_ARN,
        "RoleSessionName": "nonce-test",
        "AccessKeyId": DEFAULT_ROOT_ACCESS_KEY_ID,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureType": "",
        "SignatureNonce": "fixed-nonce-0001",
        "Timestamp": format_expiration(time.time()),
    }
    forged = signed_rpc_url(params, "not-the-secret")
    status, error = raw_error(
        urllib.request.Request(f"http://{endpoint}{forged}", method="POST", data=b"")
    )
    assert (status, error["Code"]) == (400, "SignatureDoesNotMatch")
    genuine = signed_rpc_url(params, DEFAULT_ROOT_ACCESS_KEY_SECRET)
    request = urllib.request.Request(f"http://{endpoint}{genuine}", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.loads(response.read())["AssumedRoleUser"]["Arn"].endswith("/nonce-test")


def test_expired_sts_credentials_calling_sts(endpoint, service, clock):
    clock.advance(-1000)
    creds = issued(service)
    clock.reset()
    client = AcsClient(
        region_id=REGION,
        credential=StsTokenCredential(
            creds["AccessKeyId"], creds["AccessKeySecret"], creds["SecurityToken"]
        ),
        auto_retry=False,
    )
    error = old_error(endpoint, client=client)
    assert (error.get_http_status(), error.get_error_code()) == (
        400,
        "InvalidSecurityToken.Expired",
    )
