"""An accepted object cannot be replaced, and OSS itself is what refuses.

The attacker is the user: valid account, valid STS credentials from /api/sts/credentials/, the
official oss2 SDK, and every header of the request theirs to edit. After an upload is accepted
they try every write OSS offers on its key: PutObject, CopyObject, multipart, AppendObject,
PutSymlink, with and without `x-oss-forbid-overwrite`; and uploads that set an ACL or tags.
The emulator enforces the session policy the server issued and the header as OSS documents it.
"""

from __future__ import annotations

import json

import oss2
import pytest
from oss2.exceptions import AccessDenied, ObjectNotAppendable, ServerError

from tests.uploads.conftest import png_bytes
from uploads.models import Upload

pytestmark = pytest.mark.django_db(transaction=True)

NO_OVERWRITE = {"x-oss-forbid-overwrite": "true"}
ORIGINAL = b"the accepted bytes"


@pytest.fixture
def accepted(live, user):
    """An upload accepted through its ticket, and the user's own oss2 client."""
    ticket = live.ticket(user, filename="note.txt", size=len(ORIGINAL), content_type="text/plain")
    bucket = live.bucket(user)
    result = bucket.put_object(
        ticket["key"], ORIGINAL, headers={**ticket["headers"], "Content-Type": "text/plain"}
    )
    assert json.loads(result.resp.read())["ok"] is True
    return ticket["key"], bucket


def _unchanged(live, key: str) -> None:
    assert live.root_bucket().get_object(key).read() == ORIGINAL
    upload = Upload.objects.get(key=key)
    assert (upload.size, upload.content_type) == (len(ORIGINAL), "text/plain")


def _already_exists(call) -> None:
    # oss2 has no class of its own for this code: a plain ServerError.
    with pytest.raises(ServerError) as caught:
        call()
    assert (caught.value.status, caught.value.code) == (409, "FileAlreadyExists")


def _denied(call) -> None:
    with pytest.raises(AccessDenied) as caught:
        call()
    assert caught.value.status == 403


@pytest.mark.parametrize(
    "headers",
    [{}, {"x-oss-forbid-overwrite": "false"}, {"x-oss-forbid-overwrite": "FALSE"}],
    ids=["no-header", "false", "FALSE"],
)
def test_put_that_would_replace_is_denied_by_the_session_policy(live, accepted, headers):
    key, bucket = accepted
    _denied(lambda: bucket.put_object(key, b"2 MB of something else", headers=headers))
    _unchanged(live, key)


def test_put_with_the_header_is_refused_by_oss_as_already_existing(live, user, accepted):
    key, bucket = accepted
    # Even with a fresh ticket's headers (callback and all) the key is taken.
    other = live.ticket(user, filename="x.txt", size=5, content_type="text/plain")
    _already_exists(lambda: bucket.put_object(key, b"other", headers=other["headers"]))
    _unchanged(live, key)


def test_an_invalid_header_value_is_a_bad_request(live, accepted):
    key, bucket = accepted
    with pytest.raises(ServerError) as caught:
        bucket.put_object(key, b"x", headers={"x-oss-forbid-overwrite": "yes"})
    assert (caught.value.status, caught.value.code) == (400, "InvalidArgument")
    _unchanged(live, key)


def test_copy_onto_an_accepted_object_is_refused(live, user, accepted):
    key, bucket = accepted
    source = live.ticket(user, filename="img.png", size=len(png_bytes(2, 2)))
    bucket.put_object(source["key"], png_bytes(2, 2), headers=source["headers"])
    name = bucket.bucket_name
    _denied(lambda: bucket.copy_object(name, source["key"], key))
    _already_exists(lambda: bucket.copy_object(name, source["key"], key, headers=NO_OVERWRITE))
    _unchanged(live, key)


def test_multipart_completion_onto_an_accepted_object_is_refused(live, accepted):
    key, bucket = accepted
    upload_id = bucket.init_multipart_upload(key, headers=NO_OVERWRITE).upload_id
    part = bucket.upload_part(key, upload_id, 1, b"m" * 2048, headers=NO_OVERWRITE)
    parts = [oss2.models.PartInfo(1, part.etag)]
    _denied(lambda: bucket.complete_multipart_upload(key, upload_id, parts))
    _already_exists(
        lambda: bucket.complete_multipart_upload(key, upload_id, parts, headers=NO_OVERWRITE)
    )
    _unchanged(live, key)


def test_a_multipart_upload_started_before_acceptance_cannot_replace_it(live, user):
    # Started on the ticket's key while it was still free, completed after the real upload.
    ticket = live.ticket(user, filename="note.txt", size=len(ORIGINAL), content_type="text/plain")
    bucket = live.bucket(user)
    key = ticket["key"]
    upload_id = bucket.init_multipart_upload(key, headers=NO_OVERWRITE).upload_id
    part = bucket.upload_part(key, upload_id, 1, b"late" * 1000, headers=NO_OVERWRITE)
    bucket.put_object(key, ORIGINAL, headers={**ticket["headers"], "Content-Type": "text/plain"})
    parts = [oss2.models.PartInfo(1, part.etag)]
    _denied(lambda: bucket.complete_multipart_upload(key, upload_id, parts))
    _already_exists(
        lambda: bucket.complete_multipart_upload(key, upload_id, parts, headers=NO_OVERWRITE)
    )
    _unchanged(live, key)


def test_append_to_an_accepted_object_is_refused(live, accepted):
    key, bucket = accepted
    _denied(lambda: bucket.append_object(key, len(ORIGINAL), b"more"))
    with pytest.raises(ObjectNotAppendable):
        bucket.append_object(key, len(ORIGINAL), b"more", headers=NO_OVERWRITE)
    _unchanged(live, key)


def test_a_symlink_cannot_replace_an_accepted_object(live, user, accepted):
    key, bucket = accepted
    target = f"users/{user.public_id}/elsewhere.txt"
    _denied(lambda: bucket.put_symlink(target, key))
    _already_exists(lambda: bucket.put_symlink(target, key, headers=NO_OVERWRITE))
    _unchanged(live, key)


@pytest.mark.parametrize(
    "extra",
    [
        {"x-oss-object-acl": "public-read"},
        {"x-oss-object-acl": "private"},
        {"x-oss-tagging": "a=b"},
    ],
    ids=["public-acl", "private-acl", "tags"],
)
def test_an_upload_that_sets_an_acl_or_tags_is_denied(live, user, extra):
    ticket = live.ticket(user, filename="pub.txt", size=3, content_type="text/plain")
    bucket = live.bucket(user)
    headers = {**ticket["headers"], **extra}
    _denied(lambda: bucket.put_object(ticket["key"], b"pub", headers=headers))
    assert not live.root_bucket().object_exists(ticket["key"])
    assert Upload.objects.count() == 0


def test_writes_an_app_never_needs_are_denied(live, accepted):
    key, bucket = accepted
    _denied(lambda: bucket.put_object_acl(key, oss2.OBJECT_ACL_PUBLIC_READ))
    _denied(lambda: bucket.put_object_tagging(key, oss2.models.Tagging()))
    _denied(lambda: bucket.delete_object(key))
    _unchanged(live, key)


def test_a_fresh_resumable_upload_with_the_ticket_headers_is_accepted(live, user, tmp_path):
    # oss2.resumable_upload sends a file under its multipart threshold as one PutObject with the
    # headers it is given: the ticket's.
    data = b"r" * 5000
    path = tmp_path / "report.txt"
    path.write_bytes(data)
    ticket = live.ticket(user, filename="report.txt", size=len(data), content_type="text/plain")
    result = oss2.resumable_upload(
        live.bucket(user),
        ticket["key"],
        str(path),
        headers={**ticket["headers"], "Content-Type": "text/plain"},
        store=oss2.ResumableStore(root=str(tmp_path)),
    )
    assert json.loads(result.resp.read())["ok"] is True
    assert Upload.objects.get(key=ticket["key"]).size == len(data)
