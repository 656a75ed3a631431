"""The emulator's side of "no overwrite": the header as OSS documents it, the RAM condition keys a
session policy sees, and writes the emulator does not implement refused as OSS refuses them."""

from __future__ import annotations

import json

import oss2
import pytest
from oss2.exceptions import AccessDenied, ServerError

from tests.emulator.conftest import BUCKET, assume_role, sts_bucket
from tests.emulator.test_oss_post_and_callbacks import encode_policy, post, v1_fields

OBJECTS = f"acs:oss:*:*:{BUCKET}/users/alice/*"
NO_OVERWRITE = {"x-oss-forbid-overwrite": "true"}


def guarded_policy() -> str:
    """Uploads only with x-oss-forbid-overwrite: true, never with an ACL (the server's shape)."""
    return json.dumps(
        {
            "Version": "1",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["oss:PutObject", "oss:GetObject", "oss:AbortMultipartUpload"],
                    "Resource": [OBJECTS],
                },
                {
                    "Effect": "Deny",
                    "Action": ["oss:PutObject"],
                    "Resource": [OBJECTS],
                    "Condition": {"StringNotEquals": {"oss:x-oss-forbid-overwrite": ["true"]}},
                },
                {
                    "Effect": "Deny",
                    "Action": ["oss:PutObject"],
                    "Resource": [OBJECTS],
                    "Condition": {"StringLike": {"oss:x-oss-object-acl": ["*"]}},
                },
                {
                    "Effect": "Deny",
                    "Action": ["oss:PutObjectAcl", "oss:PutObjectTagging", "oss:RestoreObject"],
                    "Resource": [OBJECTS],
                },
            ],
        }
    )


@pytest.fixture
def guarded(emu, auth_version) -> oss2.Bucket:
    creds = assume_role(emu, policy=guarded_policy(), session="alice")
    return sts_bucket(emu, creds, auth_version)


def _code(call) -> tuple[int, str]:
    with pytest.raises(ServerError) as caught:
        call()
    return caught.value.status, caught.value.code


def test_the_condition_key_carries_the_header_with_false_as_its_default(guarded):
    key = "users/alice/a.txt"
    assert _code(lambda: guarded.put_object(key, b"x")) == (403, "AccessDenied")
    assert _code(
        lambda: guarded.put_object(key, b"x", headers={"x-oss-forbid-overwrite": "false"})
    ) == (403, "AccessDenied")
    assert guarded.put_object(key, b"x", headers={"x-oss-forbid-overwrite": "True"}).status == 200
    assert _code(lambda: guarded.put_object(key, b"y", headers=NO_OVERWRITE)) == (
        409,
        "FileAlreadyExists",
    )
    assert guarded.get_object(key).read() == b"x"


def test_upload_part_needs_no_header_but_init_and_complete_do(guarded):
    key = "users/alice/big.bin"
    assert _code(lambda: guarded.init_multipart_upload(key)) == (403, "AccessDenied")
    upload_id = guarded.init_multipart_upload(key, headers=NO_OVERWRITE).upload_id
    part = guarded.upload_part(key, upload_id, 1, b"p" * 100)
    parts = [oss2.models.PartInfo(1, part.etag)]
    assert _code(lambda: guarded.complete_multipart_upload(key, upload_id, parts)) == (
        403,
        "AccessDenied",
    )
    guarded.complete_multipart_upload(key, upload_id, parts, headers=NO_OVERWRITE)
    assert guarded.get_object(key).read() == b"p" * 100


def test_append_needs_the_header_too(guarded):
    key = "users/alice/log.txt"
    with pytest.raises(AccessDenied):
        guarded.append_object(key, 0, b"a")
    assert guarded.append_object(key, 0, b"a", headers=NO_OVERWRITE).next_position == 1


@pytest.mark.parametrize("value", ["yes", "1", "truee"])
def test_a_header_that_is_neither_true_nor_false_is_invalid(root_bucket, value):
    key = "users/alice/v.txt"
    headers = {"x-oss-forbid-overwrite": value}
    assert _code(lambda: root_bucket.put_object(key, b"x", headers=headers)) == (
        400,
        "InvalidArgument",
    )
    assert not root_bucket.object_exists(key)


def test_acl_and_tags_on_upload_are_judged_by_the_policy(guarded):
    key = "users/alice/pub.txt"
    acl = {**NO_OVERWRITE, "x-oss-object-acl": "public-read"}
    assert _code(lambda: guarded.put_object(key, b"x", headers=acl)) == (403, "AccessDenied")
    tags = {**NO_OVERWRITE, "x-oss-tagging": "k=v"}
    assert _code(lambda: guarded.put_object(key, b"x", headers=tags)) == (403, "AccessDenied")
    assert _code(lambda: guarded.get_object(key)) == (404, "NoSuchKey")


def test_unimplemented_writes_are_denied_as_oss_denies_them(guarded, root_bucket):
    key = "users/alice/t.txt"
    root_bucket.put_object(key, b"t")
    assert _code(lambda: guarded.put_object_acl(key, oss2.OBJECT_ACL_PUBLIC_READ)) == (
        403,
        "AccessDenied",
    )
    assert _code(lambda: guarded.put_object_tagging(key, oss2.models.Tagging())) == (
        403,
        "AccessDenied",
    )
    assert _code(lambda: guarded.restore_object(key)) == (403, "AccessDenied")
    # A principal the policy does not stop learns that the emulator does not implement it.
    assert _code(lambda: root_bucket.put_object_acl(key, oss2.OBJECT_ACL_PUBLIC_READ)) == (
        400,
        "NotImplemented",
    )


def test_put_symlink_is_checked_like_an_upload(guarded, root_bucket):
    key = "users/alice/link"
    root_bucket.put_object(key, b"taken")
    assert _code(lambda: guarded.put_symlink("users/alice/t.txt", key)) == (403, "AccessDenied")
    assert _code(lambda: guarded.put_symlink("users/alice/t.txt", key, headers=NO_OVERWRITE)) == (
        409,
        "FileAlreadyExists",
    )
    free = "users/alice/free-link"
    assert _code(lambda: guarded.put_symlink("users/alice/t.txt", free, headers=NO_OVERWRITE)) == (
        400,
        "NotImplemented",
    )
    assert root_bucket.get_object(key).read() == b"taken"


def test_post_object_obeys_the_same_rules_through_its_form_fields(emu, root_bucket):
    creds = assume_role(emu, policy=guarded_policy(), session="alice")
    conditions = [{"bucket": BUCKET}, ["starts-with", "$key", "users/alice/"]]
    signed = v1_fields(creds, encode_policy(conditions))
    key = "users/alice/form.jpg"

    refused = post(emu, {"key": key, **signed}, b"no header")
    assert (refused.status_code, b"<Code>AccessDenied</Code>" in refused.content) == (403, True)
    stored = post(emu, {"key": key, **NO_OVERWRITE, **signed}, b"first")
    assert stored.status_code == 204, stored.content
    again = post(emu, {"key": key, **NO_OVERWRITE, **signed}, b"second")
    assert again.status_code == 409
    assert b"<Code>FileAlreadyExists</Code>" in again.content
    assert root_bucket.get_object(key).read() == b"first"
