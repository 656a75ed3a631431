"""PostObject policies as OSS documents them: every condition type, malformed policies
(InvalidPolicyDocument), what a V4 form's policy must fix, x-oss-date limits and the 5 GB cap.
Real multipart POSTs against the emulator with V1 and V4 form signatures."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from emulator.oss.postpolicy import MAX_POST_SIZE, decode_policy
from tests.emulator.conftest import BUCKET
from tests.emulator.test_oss_post_and_callbacks import encode_policy, post, v1_fields, v4_fields


@pytest.fixture(params=["v1", "v4"])
def signer(request):
    return v1_fields if request.param == "v1" else v4_fields


def _post(emu, creds, signer, conditions, content=b"abc", **fields):
    fields = {"key": "users/alice/p.jpg", **fields}
    return post(emu, {**fields, **signer(creds, encode_policy(conditions))}, content)


@pytest.mark.parametrize(
    ("condition", "fields", "allowed"),
    [
        (["eq", "$key", "users/alice/p.jpg"], {}, True),
        (["eq", "$key", "users/alice/q.jpg"], {}, False),
        (["starts-with", "$key", "users/alice/"], {}, True),
        (["starts-with", "$key", "users/bob/"], {}, False),
        (["starts-with", "$Content-Type", "image/"], {"Content-Type": "image/png"}, True),
        (["starts-with", "$Content-Type", "image/"], {"Content-Type": "text/html"}, False),
        (["in", "$content-type", ["image/jpeg", "image/png"]], {"Content-Type": "image/png"}, True),
        (["in", "$content-type", ["image/jpeg"]], {"Content-Type": "image/png"}, False),
        (["not-in", "$cache-control", ["no-cache"]], {"Cache-Control": "max-age=60"}, True),
        (["not-in", "$cache-control", ["no-cache"]], {"Cache-Control": "no-cache"}, False),
        ({"bucket": BUCKET}, {}, True),
        ({"bucket": "another-bucket"}, {}, False),
        (["eq", "$bucket", BUCKET], {}, True),
        (["eq", "$x-oss-meta-album", "trip"], {"x-oss-meta-album": "trip"}, True),
        (["eq", "$x-oss-meta-album", "trip"], {"x-oss-meta-album": "work"}, False),
        (["eq", "$x-oss-meta-album", "trip"], {}, False),  # a missing field is ""
        (["eq", "$success_action_status", "201"], {"success_action_status": "201"}, True),
        (["eq", "$success_action_status", "201"], {"success_action_status": "204"}, False),
        (["eq", "$x:tag", "one"], {"x:tag": "one"}, True),
        (["eq", "$x:tag", "one"], {"x:tag": "two"}, False),
        # Field names are case-insensitive, values are not.
        (["eq", "$KEY", "users/alice/p.jpg"], {}, True),
        (["eq", "$key", "USERS/alice/p.jpg"], {}, False),
    ],
)
def test_each_condition_type(emu, alice_creds, root_bucket, signer, condition, fields, allowed):
    response = _post(emu, alice_creds, signer, [condition], **fields)
    if allowed:
        assert response.status_code in (201, 204), response.text
        assert root_bucket.object_exists("users/alice/p.jpg")
        root_bucket.delete_object("users/alice/p.jpg")
    else:
        assert response.status_code == 403, response.text
        assert "<Code>AccessDenied</Code>" in response.text
        assert (
            "Invalid according to Policy: Policy Condition failed: " + json.dumps(condition)
            in response.text
        )
        assert not root_bucket.object_exists("users/alice/p.jpg")


@pytest.mark.parametrize(
    "document",
    [
        {"conditions": []},  # no expiration
        {"expiration": "2099-01-01T00:00:00.000Z"},  # no conditions
        {"expiration": "tomorrow", "conditions": []},
        {"expiration": "2099-01-01T00:00:00.000Z", "conditions": [], "test": "test"},
        {"expiration": "2099-01-01T00:00:00.000Z", "conditions": [["$key"]]},
        {"expiration": "2099-01-01T00:00:00.000Z", "conditions": [["eq", "$key", "a", "b"]]},
        {"expiration": "2099-01-01T00:00:00.000Z", "conditions": [["like", "$key", "a"]]},
        {"expiration": "2099-01-01T00:00:00.000Z", "conditions": [["eq", "key", "a"]]},
        {"expiration": "2099-01-01T00:00:00.000Z", "conditions": [["in", "$key", "a"]]},
        {"expiration": "2099-01-01T00:00:00.000Z", "conditions": [{"a": "1", "b": "2"}]},
        {
            "expiration": "2099-01-01T00:00:00.000Z",
            "conditions": [["content-length-range", 1, "test"]],
        },
        {
            "expiration": "2099-01-01T00:00:00.000Z",
            "conditions": [["content-length-range", 20, 10]],
        },
        {"expiration": "2099-01-01T00:00:00.000Z", "conditions": [["content-length-range", -1, 1]]},
        "not a policy object",
    ],
)
def test_malformed_policies_are_invalid_policy_documents(emu, alice_creds, root_bucket, document):
    policy = base64.b64encode(json.dumps(document).encode()).decode()
    response = post(emu, {"key": "users/alice/p.jpg", **v1_fields(alice_creds, policy)}, b"abc")
    assert response.status_code == 400, response.text
    assert "<Code>InvalidPolicyDocument</Code>" in response.text
    assert not root_bucket.object_exists("users/alice/p.jpg")


def test_a_policy_that_is_not_base64_json(emu, alice_creds):
    fields = {"key": "users/alice/p.jpg", **v1_fields(alice_creds, "not*base64")}
    response = post(emu, fields, b"abc")
    assert response.status_code == 400
    assert "<Code>InvalidPolicyDocument</Code>" in response.text


def test_a_v4_policy_must_fix_the_signer_fields(emu, alice_creds, root_bucket):
    policy = encode_policy([["starts-with", "$key", "users/alice/"]])
    fields = v4_fields(alice_creds, policy, fix_in_policy=False)
    response = post(emu, {"key": "users/alice/p.jpg", **fields}, b"abc")
    assert response.status_code == 400
    assert "<Code>InvalidPolicyDocument</Code>" in response.text
    assert "x-oss-signature-version" in response.text
    assert not root_bucket.object_exists("users/alice/p.jpg")


def test_a_v4_form_whose_date_differs_from_its_policy(emu, alice_creds, root_bucket):
    fields = v4_fields(alice_creds, encode_policy([]))
    # Another time of the same day: the signing key is the same, the policy's x-oss-date is not.
    other = "000000Z" if fields["x-oss-date"][9:] != "000000Z" else "000001Z"
    fields["x-oss-date"] = fields["x-oss-date"][:9] + other
    response = post(emu, {"key": "users/alice/p.jpg", **fields}, b"abc")
    assert response.status_code == 403
    assert "Invalid according to Policy: Policy Condition failed: x-oss-date" in response.text
    assert not root_bucket.object_exists("users/alice/p.jpg")


def test_v4_credential_scope_must_name_oss(emu, alice_creds):
    fields = v4_fields(alice_creds, encode_policy([]))
    fields["x-oss-credential"] = fields["x-oss-credential"].replace("/oss/", "/sts/")
    response = post(emu, {"key": "users/alice/p.jpg", **fields}, b"abc")
    assert response.status_code == 400
    assert "<Code>InvalidArgument</Code>" in response.text


def test_a_v4_form_older_than_seven_days_is_refused(emu, alice_creds, root_bucket):
    fields = v4_fields(alice_creds, encode_policy([], expires_in=30 * 86400))
    emu.clock.advance(7 * 86400 + 60)
    try:
        response = post(emu, {"key": "users/alice/p.jpg", **fields}, b"abc")
    finally:
        emu.clock.reset()
    assert response.status_code == 403
    assert not root_bucket.object_exists("users/alice/p.jpg")


def test_size_limits_and_the_5_gb_cap():
    def policy(*conditions):
        document = {"expiration": "2099-01-01T00:00:00Z", "conditions": list(conditions)}
        return decode_policy(base64.b64encode(json.dumps(document).encode()).decode())

    assert policy().length_range == (0, MAX_POST_SIZE)
    assert policy(["content-length-range", 1, 10]).length_range == (1, 10)
    assert policy(["content-length-range", 0, 10 * 1024**3]).length_range == (0, 5 * 1024**3)
    assert policy(["CONTENT-LENGTH-RANGE", 2, 3]).length_range == (2, 3)
    expires = policy().expires_at
    assert datetime.fromtimestamp(expires, UTC) == datetime(2099, 1, 1, tzinfo=UTC)


def test_the_range_is_enforced_on_the_file(emu, alice_creds, root_bucket, signer):
    conditions = [["content-length-range", 2, 3]]
    too_big = _post(emu, alice_creds, signer, conditions, content=b"abcd")
    assert too_big.status_code == 400
    assert "<Code>EntityTooLarge</Code>" in too_big.text
    too_small = _post(emu, alice_creds, signer, conditions, content=b"a")
    assert too_small.status_code == 400
    assert "<Code>EntityTooSmall</Code>" in too_small.text
    assert not root_bucket.object_exists("users/alice/p.jpg")
    assert _post(emu, alice_creds, signer, conditions, content=b"abc").status_code == 204
