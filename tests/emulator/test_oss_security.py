"""Credentials and policies as OSS enforces them: alice's STS credentials reach users/alice/ and
nothing else, for every operation, over V1 and V4; bad, expired, forged and skewed requests are
refused with the codes oss2 maps."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable

import oss2
import pytest
import requests

from emulator import Emulator
from emulator.config import DEFAULT_ROOT_ACCESS_KEY_ID, DEFAULT_ROOT_ACCESS_KEY_SECRET
from tests.emulator.conftest import (
    BUCKET,
    REGION,
    StsCredentials,
    assume_role,
    sts_bucket,
    user_policy,
)

BOB_KEY = "users/bob/secret.txt"


@pytest.fixture
def bob_object(root_bucket) -> str:
    root_bucket.put_object(BOB_KEY, b"bob's data")
    return BOB_KEY


@pytest.fixture
def bob_upload(root_bucket) -> str:
    return root_bucket.init_multipart_upload("users/bob/big.bin").upload_id


def _post_form(emu: Emulator, creds: StsCredentials, key: str) -> requests.Response:
    policy = base64.b64encode(
        json.dumps(
            {"expiration": "2100-01-01T00:00:00.000Z", "conditions": [{"bucket": BUCKET}]}
        ).encode()
    ).decode()
    import hashlib
    import hmac

    signature = base64.b64encode(
        hmac.new(creds.access_key_secret.encode(), policy.encode(), hashlib.sha1).digest()
    ).decode()
    fields = {
        "key": key,
        "policy": policy,
        "OSSAccessKeyId": creds.access_key_id,
        "Signature": signature,
        "x-oss-security-token": creds.security_token,
    }
    return requests.post(
        f"{emu.endpoint}/{BUCKET}",
        data=fields,
        files={"file": ("a.txt", b"intrusion")},
        timeout=10,
    )


# Every operation alice might try on bob's folder (or on the bucket beyond her prefix).
CROSS_USER: dict[str, Callable[[oss2.Bucket, str, str], object]] = {
    "PutObject": lambda b, key, upload: b.put_object("users/bob/new.txt", b"x"),
    "GetObject": lambda b, key, upload: b.get_object(key),
    "HeadObject": lambda b, key, upload: b.head_object(key),
    "GetObjectMeta": lambda b, key, upload: b.get_object_meta(key),
    "DeleteObject": lambda b, key, upload: b.delete_object(key),
    "DeleteMultipleObjects": lambda b, key, upload: b.batch_delete_objects(
        ["users/alice/mine.txt", key]
    ),
    "CopyObjectFromBob": lambda b, key, upload: b.copy_object(BUCKET, key, "users/alice/stolen"),
    "CopyObjectToBob": lambda b, key, upload: b.copy_object(
        BUCKET, "users/alice/mine.txt", "users/bob/planted.txt"
    ),
    "ListObjects": lambda b, key, upload: b.list_objects(prefix="users/bob/"),
    "ListObjectsNoPrefix": lambda b, key, upload: b.list_objects(),
    "ListObjectsV2": lambda b, key, upload: b.list_objects_v2(prefix="users/"),
    "InitiateMultipartUpload": lambda b, key, upload: b.init_multipart_upload("users/bob/m"),
    "UploadPart": lambda b, key, upload: b.upload_part("users/bob/big.bin", upload, 1, b"x"),
    "ListParts": lambda b, key, upload: b.list_parts("users/bob/big.bin", upload),
    "CompleteMultipartUpload": lambda b, key, upload: b.complete_multipart_upload(
        "users/bob/big.bin", upload, [oss2.models.PartInfo(1, "0" * 32)]
    ),
    "AbortMultipartUpload": lambda b, key, upload: b.abort_multipart_upload(
        "users/bob/big.bin", upload
    ),
    "ListMultipartUploads": lambda b, key, upload: b.list_multipart_uploads(prefix="users/bob/"),
    "AppendObject": lambda b, key, upload: b.append_object("users/bob/log.txt", 0, b"x"),
    "GetBucketInfo": lambda b, key, upload: b.get_bucket_info(),
    "DeleteBucket": lambda b, key, upload: b.delete_bucket(),
    "PutBucket": lambda b, key, upload: oss2.Bucket(
        b.auth, b.endpoint, "alices-bucket", region=REGION
    ).create_bucket(),
}


@pytest.mark.parametrize("operation", sorted(CROSS_USER))
def test_alice_cannot_touch_bobs_objects(operation, alice, root_bucket, bob_object, bob_upload):
    alice.put_object("users/alice/mine.txt", b"mine")
    with pytest.raises(oss2.exceptions.AccessDenied) as excinfo:
        CROSS_USER[operation](alice, bob_object, bob_upload)
    assert excinfo.value.status == 403
    assert excinfo.value.request_id
    # Nothing changed on bob's side.
    assert root_bucket.get_object(BOB_KEY).read() == b"bob's data"
    assert [
        p.part_number for p in root_bucket.list_parts("users/bob/big.bin", bob_upload).parts
    ] == []
    assert not root_bucket.object_exists("users/bob/new.txt")
    assert not root_bucket.object_exists("users/bob/planted.txt")
    assert not root_bucket.object_exists("users/alice/stolen")
    assert root_bucket.object_exists("users/alice/mine.txt")


def test_denial_message_names_the_action(alice, bob_object):
    with pytest.raises(oss2.exceptions.AccessDenied) as excinfo:
        alice.get_object(bob_object)
    assert "oss:GetObject" in excinfo.value.message
    assert f"{BUCKET}/{BOB_KEY}" in excinfo.value.message


def test_post_object_into_bobs_folder_denied(emu, alice_creds, root_bucket):
    response = _post_form(emu, alice_creds, "users/bob/posted.txt")
    assert response.status_code == 403
    assert b"<Code>AccessDenied</Code>" in response.content
    assert not root_bucket.object_exists("users/bob/posted.txt")
    allowed = _post_form(emu, alice_creds, "users/alice/posted.txt")
    assert allowed.status_code == 204
    assert root_bucket.get_object("users/alice/posted.txt").read() == b"intrusion"


def test_presigned_url_for_bobs_object_denied(alice, bob_object):
    response = requests.get(alice.sign_url("GET", bob_object, 60), timeout=10)
    assert response.status_code == 403
    assert b"<Code>AccessDenied</Code>" in response.content


def test_explicit_deny_in_session_policy_wins(emu, auth_version):
    policy = json.loads(user_policy("alice"))
    policy["Statement"].append(
        {
            "Effect": "Deny",
            "Action": ["oss:DeleteObject"],
            "Resource": [f"acs:oss:*:*:{BUCKET}/users/alice/keep/*"],
        }
    )
    creds = assume_role(emu, policy=json.dumps(policy))
    bucket = sts_bucket(emu, creds, auth_version)
    bucket.put_object("users/alice/keep/a.txt", b"x")
    with pytest.raises(oss2.exceptions.AccessDenied):
        bucket.delete_object("users/alice/keep/a.txt")
    bucket.put_object("users/alice/other.txt", b"x")
    assert bucket.delete_object("users/alice/other.txt").status == 204


def test_without_session_policy_the_role_policy_applies(emu, auth_version):
    creds = assume_role(emu, policy=None)
    bucket = sts_bucket(emu, creds, auth_version)
    bucket.put_object("anywhere/x.txt", b"x")
    assert [o.key for o in bucket.list_objects().object_list] == ["anywhere/x.txt"]
    other = oss2.Bucket(bucket.auth, bucket.endpoint, "elsewhere", region=REGION)
    with pytest.raises(oss2.exceptions.AccessDenied):
        other.create_bucket()


def test_expired_token(emu, alice):
    alice.put_object("users/alice/a.txt", b"x")
    emu.clock.advance(901)
    # The token is judged first, so moving the emulator's clock reports the expiry, not a skew.
    with pytest.raises(oss2.exceptions.ServerError) as excinfo:
        alice.get_object("users/alice/a.txt")
    assert (excinfo.value.status, excinfo.value.code) == (403, "SecurityTokenExpired")


def test_forged_and_missing_tokens(emu, alice_creds, auth_version):
    forged = StsCredentials(
        alice_creds.access_key_id,
        alice_creds.access_key_secret,
        alice_creds.security_token[:-8] + "AAAAAAAA",
    )
    with pytest.raises(oss2.exceptions.ServerError) as excinfo:
        sts_bucket(emu, forged, auth_version).get_object("users/alice/a.txt")
    assert (excinfo.value.status, excinfo.value.code) == (403, "InvalidSecurityToken")

    other = assume_role(emu, policy=user_policy("bob"), session="bob")
    swapped = StsCredentials(
        alice_creds.access_key_id, alice_creds.access_key_secret, other.security_token
    )
    with pytest.raises(oss2.exceptions.ServerError) as excinfo:
        sts_bucket(emu, swapped, auth_version).get_object("users/alice/a.txt")
    assert (excinfo.value.status, excinfo.value.code) == (403, "InvalidSecurityToken")

    no_token = oss2.Auth if auth_version == "v1" else oss2.AuthV4
    bucket = oss2.Bucket(
        no_token(alice_creds.access_key_id, alice_creds.access_key_secret),
        emu.endpoint,
        BUCKET,
        region=REGION,
    )
    with pytest.raises(oss2.exceptions.ServerError) as excinfo:
        bucket.get_object("users/alice/a.txt")
    assert (excinfo.value.status, excinfo.value.code) == (403, "InvalidAccessKeyId")


def test_unknown_access_key(emu, auth_version):
    auth = oss2.Auth if auth_version == "v1" else oss2.AuthV4
    bucket = oss2.Bucket(auth("LTAInobody", "secret"), emu.endpoint, BUCKET, region=REGION)
    with pytest.raises(oss2.exceptions.ServerError) as excinfo:
        bucket.put_object("x.txt", b"x")
    assert (excinfo.value.status, excinfo.value.code) == (403, "InvalidAccessKeyId")


def test_wrong_secret_is_signature_mismatch(emu, alice_creds, auth_version):
    wrong = StsCredentials(alice_creds.access_key_id, "not-the-secret", alice_creds.security_token)
    with pytest.raises(oss2.exceptions.ServerError) as excinfo:
        sts_bucket(emu, wrong, auth_version).put_object("users/alice/a.txt", b"x")
    assert (excinfo.value.status, excinfo.value.code) == (403, "SignatureDoesNotMatch")
    assert excinfo.value.details["StringToSign"]


@pytest.mark.parametrize("auth_class", [oss2.Auth, oss2.AuthV4])
def test_tampered_request_is_signature_mismatch(emu, auth_class):
    """A correctly signed request whose signed parts are changed in transit is refused."""
    auth = auth_class(DEFAULT_ROOT_ACCESS_KEY_ID, DEFAULT_ROOT_ACCESS_KEY_SECRET)
    url = f"{emu.endpoint}/{BUCKET}/users%2Falice%2Fa.txt"
    request = oss2.http.Request(
        "PUT",
        url,
        data=b"x",
        headers={"x-oss-meta-owner": "alice", "Content-Type": "text/plain"},
        region=REGION,
        product="oss",
    )
    auth._sign_request(request, BUCKET, "users/alice/a.txt")
    headers = dict(request.headers)
    ok = requests.put(url, data=b"x", headers=headers, timeout=10)
    assert ok.status_code == 200, ok.content
    for name, value in (("x-oss-meta-owner", "mallory"), ("Content-Type", "text/html")):
        response = requests.put(url, data=b"x", headers={**headers, name: value}, timeout=10)
        assert response.status_code == 403
        assert b"<Code>SignatureDoesNotMatch</Code>" in response.content
    other_key = f"{emu.endpoint}/{BUCKET}/users%2Fbob%2Fa.txt"
    response = requests.put(other_key, data=b"x", headers=headers, timeout=10)
    assert response.status_code == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in response.content


@pytest.mark.parametrize("seconds", [16 * 60, -16 * 60])
def test_skewed_clock(emu, root_bucket, seconds):
    emu.clock.advance(seconds)
    with pytest.raises(oss2.exceptions.ServerError) as excinfo:
        root_bucket.put_object("x.txt", b"x")
    assert (excinfo.value.status, excinfo.value.code) == (403, "RequestTimeTooSkewed")
    emu.clock.reset()
    emu.clock.advance(14 * 60)  # within the 15 minutes OSS tolerates
    assert root_bucket.put_object("x.txt", b"x").status == 200


def test_skewed_clock_v4(emu):
    bucket = oss2.Bucket(
        oss2.AuthV4(DEFAULT_ROOT_ACCESS_KEY_ID, DEFAULT_ROOT_ACCESS_KEY_SECRET),
        emu.endpoint,
        BUCKET,
        region=REGION,
    )
    emu.clock.advance(3600)
    with pytest.raises(oss2.exceptions.ServerError) as excinfo:
        bucket.get_bucket_info()
    assert (excinfo.value.status, excinfo.value.code) == (403, "RequestTimeTooSkewed")


def test_v4_wrong_region_refused(emu):
    bucket = oss2.Bucket(
        oss2.AuthV4(DEFAULT_ROOT_ACCESS_KEY_ID, DEFAULT_ROOT_ACCESS_KEY_SECRET),
        emu.endpoint,
        BUCKET,
        region="us-west-1",
    )
    with pytest.raises(oss2.exceptions.ServerError) as excinfo:
        bucket.put_object("x.txt", b"x")
    assert excinfo.value.status == 400
    assert "region" in excinfo.value.message


def test_android_v4_date_header_fallback(emu):
    """The Android SDK signs V4 with only a Date header in ISO basic form (no x-oss-date)."""
    import hashlib
    import hmac
    from datetime import UTC, datetime

    now = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    scope = f"{now[:8]}/{REGION}/oss/aliyun_v4_request"
    canonical = "\n".join(
        [
            "GET",
            f"/{BUCKET}/",
            "bucketInfo",
            "x-oss-content-sha256:UNSIGNED-PAYLOAD\n",
            "",
            "UNSIGNED-PAYLOAD",
        ]
    )
    string_to_sign = (
        f"OSS4-HMAC-SHA256\n{now}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    )
    key = ("aliyun_v4" + DEFAULT_ROOT_ACCESS_KEY_SECRET).encode()
    for part in (now[:8], REGION, "oss", "aliyun_v4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    response = requests.get(
        f"{emu.endpoint}/{BUCKET}/?bucketInfo",
        headers={
            "Date": now,
            "x-oss-content-sha256": "UNSIGNED-PAYLOAD",
            "Authorization": f"OSS4-HMAC-SHA256 Credential={DEFAULT_ROOT_ACCESS_KEY_ID}/{scope}, "
            f"Signature={signature}",
        },
        timeout=10,
    )
    assert response.status_code == 200, response.content
    assert b"<Name>app-uploads</Name>" in response.content


def test_anonymous_requests_denied(emu, root_bucket):
    root_bucket.put_object("public?.txt", b"x")
    response = requests.get(f"{emu.endpoint}/{BUCKET}/public%3F.txt", timeout=10)
    assert response.status_code == 403
    assert b"<Code>AccessDenied</Code>" in response.content
    head = requests.head(f"{emu.endpoint}/{BUCKET}/public%3F.txt", timeout=10)
    assert head.status_code == 403
    assert b"<Code>AccessDenied</Code>" in base64.b64decode(head.headers["x-oss-err"])
    assert head.headers["x-oss-request-id"]


def test_tokens_stay_valid_until_expiry(emu, alice):
    alice.put_object("users/alice/a.txt", b"x")
    emu.clock.advance(600)  # within the skew window, before the token's 900 s run out
    assert alice.get_object("users/alice/a.txt").read() == b"x"


def test_credentials_from_the_newer_sts_sdk_work_with_oss2_v4(emu):
    """alibabacloud-sts20150401 (ACS3-HMAC-SHA256) issues the credentials, oss2 V4 uses them."""
    from alibabacloud_sts20150401 import models as sts_models
    from alibabacloud_sts20150401.client import Client
    from alibabacloud_tea_openapi import models as openapi_models

    from emulator.config import DEFAULT_ROLE_ARN

    client = Client(
        openapi_models.Config(
            access_key_id=DEFAULT_ROOT_ACCESS_KEY_ID,
            access_key_secret=DEFAULT_ROOT_ACCESS_KEY_SECRET,
            endpoint=emu.endpoint.removeprefix("http://"),
            protocol="http",
            region_id=REGION,
        )
    )
    response = client.assume_role(
        sts_models.AssumeRoleRequest(
            role_arn=DEFAULT_ROLE_ARN,
            role_session_name="carol",
            duration_seconds=900,
            policy=user_policy("carol"),
        )
    )
    creds = response.body.credentials
    bucket = sts_bucket(
        emu,
        StsCredentials(creds.access_key_id, creds.access_key_secret, creds.security_token),
        "v4",
    )
    assert bucket.put_object("users/carol/a.txt", b"carol").status == 200
    with pytest.raises(oss2.exceptions.AccessDenied):
        bucket.put_object("users/alice/a.txt", b"carol")


def test_response_date_follows_the_emulator_clock(emu, root_bucket):
    from email.utils import parsedate_to_datetime

    emu.clock.advance(600)
    result = root_bucket.put_object("dated.txt", b"x")
    served = parsedate_to_datetime(result.headers["Date"]).timestamp()
    # Ten minutes ahead of the real clock, like the emulator's.
    assert served - time.time() > 500
