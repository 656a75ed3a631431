"""A user's credentials reach only that user's prefix: checked with the official oss2 SDK against
the emulator, which evaluates the role policy and the session policy as RAM does."""

from __future__ import annotations

import oss2
import pytest
from oss2.exceptions import AccessDenied

from emulator.config import DEFAULT_ROOT_ACCESS_KEY_ID, DEFAULT_ROOT_ACCESS_KEY_SECRET
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["v1", "v4"])
def auth_version(request) -> str:
    return request.param


def sdk_bucket(body: dict, auth_version: str) -> oss2.Bucket:
    """What an app does with the response: nothing but its fields."""
    auth = oss2.StsAuth(
        body["AccessKeyId"],
        body["AccessKeySecret"],
        body["SecurityToken"],
        auth_version=auth_version,
    )
    return oss2.Bucket(auth, body["Endpoint"], body["Bucket"], region=body["Region"])


@pytest.fixture
def root(alibaba, settings) -> oss2.Bucket:
    auth = oss2.Auth(DEFAULT_ROOT_ACCESS_KEY_ID, DEFAULT_ROOT_ACCESS_KEY_SECRET)
    return oss2.Bucket(auth, alibaba.endpoint, settings.OSS_BUCKET)


# What every upload with the users' credentials must carry (the tickets' headers have it).
NO_OVERWRITE = {"x-oss-forbid-overwrite": "true"}


def denied(call) -> None:
    with pytest.raises(AccessDenied) as caught:
        call()
    assert caught.value.status == 403


def test_readwrite_reaches_only_the_own_prefix(credentials, user, other_user, root, auth_version):
    theirs = f"users/{other_user.public_id}/secret.txt"
    root.put_object(theirs, b"not yours")
    body = credentials.get(user, "readwrite").json()
    bucket = sdk_bucket(body, auth_version)
    own = f"{body['Prefix']}notes/hello.txt"

    assert bucket.put_object(own, b"hello", headers=NO_OVERWRITE).status == 200
    assert bucket.get_object(own).read() == b"hello"
    listed = bucket.list_objects_v2(prefix=body["Prefix"])
    assert [o.key for o in listed.object_list] == [own]
    # Deleting goes through the app server (DELETE /api/uploads/{id}/), never the credentials.
    denied(lambda: bucket.delete_object(own))

    denied(
        lambda: bucket.put_object(
            f"users/{other_user.public_id}/planted.txt", b"x", headers=NO_OVERWRITE
        )
    )
    denied(lambda: bucket.get_object(theirs))
    denied(lambda: bucket.list_objects_v2(prefix=f"users/{other_user.public_id}/"))
    denied(lambda: bucket.list_objects_v2(prefix="users/"))
    denied(lambda: bucket.list_objects_v2())
    denied(lambda: bucket.delete_object(theirs))
    denied(lambda: bucket.put_object("outside.txt", b"x", headers=NO_OVERWRITE))
    # A public id that merely starts like another user's is another folder.
    denied(lambda: bucket.get_object(body["Prefix"].rstrip("/") + "x/file"))
    assert root.get_object(theirs).read() == b"not yours"


def test_write_scope_uploads_but_cannot_read_or_list(credentials, user, root, auth_version):
    body = credentials.get(user, "write").json()
    bucket = sdk_bucket(body, auth_version)
    key = f"{body['Prefix']}upload.bin"
    assert bucket.put_object(key, b"data", headers=NO_OVERWRITE).status == 200
    denied(lambda: bucket.get_object(key))
    denied(lambda: bucket.list_objects_v2(prefix=body["Prefix"]))
    denied(lambda: bucket.delete_object(key))
    # Multipart, as the mobile SDKs do it for large files, the header on every request.
    multipart_key = f"{body['Prefix']}big.bin"
    upload_id = bucket.init_multipart_upload(multipart_key, headers=NO_OVERWRITE).upload_id
    part = bucket.upload_part(multipart_key, upload_id, 1, b"p" * 1024, headers=NO_OVERWRITE)
    assert bucket.list_parts(multipart_key, upload_id).parts[0].etag == part.etag
    bucket.complete_multipart_upload(
        multipart_key, upload_id, [oss2.models.PartInfo(1, part.etag)], headers=NO_OVERWRITE
    )
    assert root.get_object(multipart_key).read() == b"p" * 1024
    aborted = bucket.init_multipart_upload(
        f"{body['Prefix']}aborted.bin", headers=NO_OVERWRITE
    ).upload_id
    assert bucket.abort_multipart_upload(f"{body['Prefix']}aborted.bin", aborted).status == 204


def test_read_scope_reads_and_lists_but_cannot_write(credentials, user, root, auth_version):
    prefix = f"users/{user.public_id}/"
    root.put_object(f"{prefix}photo.jpg", b"jpeg")
    body = credentials.get(user, "read").json()
    bucket = sdk_bucket(body, auth_version)
    assert bucket.get_object(f"{prefix}photo.jpg").read() == b"jpeg"
    listed = bucket.list_objects_v2(prefix=prefix)
    assert [o.key for o in listed.object_list] == [f"{prefix}photo.jpg"]
    denied(lambda: bucket.put_object(f"{prefix}new.jpg", b"x", headers=NO_OVERWRITE))
    denied(lambda: bucket.delete_object(f"{prefix}photo.jpg"))


def test_staff_bucket_read_reads_any_prefix_but_cannot_write(credentials, other_user, root):
    theirs = f"users/{other_user.public_id}/doc.txt"
    root.put_object(theirs, b"doc")
    staff = UserFactory(is_staff=True)
    bucket = sdk_bucket(credentials.get(staff, "bucket_read").json(), "v4")
    assert bucket.get_object(theirs).read() == b"doc"
    denied(lambda: bucket.put_object(theirs, b"overwritten"))
