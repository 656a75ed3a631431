"""Form tickets: a PostObject form whose policy fixes the key, the size range, the type, the
callback and its variable. Real multipart POSTs (requests) against the emulator, which enforces
the policy as OSS documents it: anything else is refused before a byte is stored."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
import requests

from uploads.models import CallbackRefusal, StorageUsage, Upload, UploadTicket
from uploads.signing import post_policy

pytestmark = pytest.mark.django_db(transaction=True)

DATA = b"%PNG-ish bytes of a small picture"


def form_ticket(live, user, *, size=None, content_type="image/png"):
    size = len(DATA) if size is None else size
    ticket = live.ticket(
        user, filename="pic.png", size=size, content_type=content_type, mode="form"
    )
    assert ticket["mode"] == "form"
    return ticket


def post(upload: dict, data: bytes, *, filename="pic.png", part_type="image/png", **changes):
    fields = dict(upload["fields"])
    for name, value in changes.items():
        if value is None:
            fields.pop(name, None)
        else:
            fields[name] = value
    return requests.post(
        upload["url"],
        data=fields,
        files={upload["file_field"]: (filename, data, part_type)},
        timeout=10,
    )


def nothing_happened(live, user, ticket, *keys):
    root = live.root_bucket()
    for key in (ticket["key"], *keys):
        assert root.object_exists(key) is False, key
    assert Upload.objects.count() == 0
    assert CallbackRefusal.objects.count() == 0
    assert UploadTicket.objects.get(pk=ticket["id"]).status == UploadTicket.Status.ISSUED
    usage = StorageUsage.objects.get(user=user)
    assert (usage.bytes_used, usage.bytes_reserved) == (0, ticket["max_size"])


@pytest.mark.parametrize("version", ["v1", "v4"])
def test_a_form_post_is_recorded_and_the_answer_relayed(live, user, settings, version):
    settings.OSS_SIGNATURE_VERSION = version
    ticket = form_ticket(live, user)
    upload = ticket["upload"]
    assert upload["method"] == "POST"
    assert upload["url"] == f"{live.settings.OSS_PUBLIC_ENDPOINT}/{ticket['bucket']}/"
    fields = upload["fields"]
    signer_fields = (
        ["x-oss-signature-version", "x-oss-credential", "x-oss-date", "x-oss-security-token"]
        if version == "v4"
        else ["OSSAccessKeyId", "x-oss-security-token"]
    )
    signature_field = "x-oss-signature" if version == "v4" else "Signature"
    assert list(fields) == [
        "key",
        "Content-Type",
        "success_action_status",
        "callback",
        "x:ticket",
        "x-oss-forbid-overwrite",
        *signer_fields,
        "policy",
        signature_field,
    ]
    assert (fields["key"], fields["Content-Type"]) == (ticket["key"], "image/png")
    assert fields["callback"] == ticket["headers"]["x-oss-callback"]
    assert fields["x:ticket"] == ticket["callback"]["callbackVar"]["x:ticket"]
    # The policy is exactly the one the server means (tested by equality below).
    policy = json.loads(base64.b64decode(fields["policy"]))
    row = UploadTicket.objects.get(pk=ticket["id"])
    assert policy == post_policy(
        bucket=ticket["bucket"],
        key=ticket["key"],
        max_size=len(DATA),
        content_type="image/png",
        callback=fields["callback"],
        variables={"x:ticket": fields["x:ticket"]},
        expires_at=row.expires_at,
        signer_fields={name: fields[name] for name in signer_fields},
    )

    response = post(upload, DATA)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["ok"] is True
    upload_row = Upload.objects.get()
    assert answer["upload"]["id"] == upload_row.pk
    assert (upload_row.key, upload_row.size, upload_row.content_type) == (
        ticket["key"],
        len(DATA),
        "image/png",
    )
    assert live.root_bucket().get_object(ticket["key"]).read() == DATA
    usage = StorageUsage.objects.get(user=user)
    assert (usage.bytes_used, usage.objects_used, usage.bytes_reserved) == (len(DATA), 1, 0)


def test_a_smaller_file_is_within_the_range(live, user):
    ticket = form_ticket(live, user, size=1000)
    response = post(ticket["upload"], DATA)
    assert response.status_code == 200, response.text
    assert Upload.objects.get().size == len(DATA)


def test_the_post_policy_is_exact():
    policy = post_policy(
        bucket="b",
        key="users/u/k.png",
        max_size=10,
        content_type="image/png",
        callback="Y2I=",
        variables={"x:ticket": "t"},
        expires_at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        signer_fields={"x-oss-date": "20300102T030405Z"},
    )
    assert policy == {
        "expiration": "2030-01-02T03:04:05.000Z",
        "conditions": [
            {"bucket": "b"},
            ["eq", "$key", "users/u/k.png"],
            ["content-length-range", 0, 10],
            ["eq", "$Content-Type", "image/png"],
            ["eq", "$callback", "Y2I="],
            ["eq", "$x:ticket", "t"],
            ["eq", "$x-oss-forbid-overwrite", "true"],
            ["eq", "$success_action_status", "200"],
            {"x-oss-date": "20300102T030405Z"},
        ],
    }


def _edited_callback(ticket) -> str:
    spec = json.loads(base64.b64decode(ticket["headers"]["x-oss-callback"]))
    spec["callbackBody"] = spec["callbackBody"].replace("size=${size}", "size=1")
    return base64.b64encode(json.dumps(spec).encode()).decode()


@pytest.mark.parametrize("version", ["v1", "v4"])
@pytest.mark.parametrize(
    ("edit", "status", "code"),
    [
        ("larger", 400, "EntityTooLarge"),
        ("other_key", 403, "AccessDenied"),
        ("other_type", 403, "AccessDenied"),
        ("no_type", 403, "AccessDenied"),
        ("callback", 403, "AccessDenied"),
        ("no_callback", 403, "AccessDenied"),
        ("ticket_var", 403, "AccessDenied"),
        ("no_forbid_overwrite", 403, "AccessDenied"),
        ("policy", 403, "SignatureDoesNotMatch"),
        ("expired", 403, "AccessDenied"),
    ],
)
def test_anything_else_is_refused_by_oss_before_storing(
    live, user, settings, version, edit, status, code
):
    settings.OSS_SIGNATURE_VERSION = version
    settings.UPLOAD_TICKET_TTL_SECONDS = 120  # the policy expires long before its credentials
    ticket = form_ticket(live, user)
    upload = ticket["upload"]
    other_key = ticket["key"].replace(".png", "-2.png")
    data, changes = DATA, {}
    if edit == "larger":
        data = DATA + b"!"
    elif edit == "other_key":
        changes["key"] = other_key
    elif edit == "other_type":
        changes["Content-Type"] = "text/html"
    elif edit == "no_type":
        changes["Content-Type"] = None
    elif edit == "callback":
        changes["callback"] = _edited_callback(ticket)
    elif edit == "no_callback":
        changes["callback"] = None
    elif edit == "ticket_var":
        changes["x:ticket"] = "0" * 32 + ".forged"
    elif edit == "no_forbid_overwrite":
        changes["x-oss-forbid-overwrite"] = None
    elif edit == "policy":
        # Widen the policy itself: the signature no longer matches it.
        policy = json.loads(base64.b64decode(upload["fields"]["policy"]))
        policy["conditions"][2] = ["content-length-range", 0, 10**9]
        changes["policy"] = base64.b64encode(json.dumps(policy).encode()).decode()
    elif edit == "expired":
        live.emulator.clock.advance(180)
    response = post(upload, data, **changes)
    live.emulator.clock.reset()
    assert response.status_code == status, response.text
    assert f"<Code>{code}</Code>" in response.text
    if code == "AccessDenied":
        assert "Invalid according to Policy" in response.text
    nothing_happened(live, user, ticket, other_key)
