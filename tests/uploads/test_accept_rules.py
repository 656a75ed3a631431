"""One description of the accept rules, held against both paths that apply them.

The rules live in Python (uploads/services/rules.py, checked by the ticket-locked path
`callback_decide_locked`) and again in SQL (`accept_at_once`, one statement for the callbacks
everything allows). RULES below is the one table of them: each row sets up a ticket, its owner,
the usage row and the callback's facts so that one rule decides, and names the verdict. Every
row runs, on PostgreSQL and from the same rows (each path in a savepoint rolled back after), through

- the locked path alone,
- the callback's own entry `callback_decide` (the fast path first, the locked path for the rest),
- the fast path alone,

and all must agree: the same verdict (accepted, or the refusal reason) and the same rows after
(usage, ticket, upload, refusal). The fast path alone accepts exactly the rows the locked path
accepts (except those it leaves to it by design: a replay, a missing usage row) and writes
nothing when it does not. A rule added to one path and not the other fails here; a refusal reason
added to CallbackRefusal.Reason fails `test_the_table_names_every_refusal_reason` until a row
drives it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

import pytest
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from tests.factories import StorageUsageFactory, UserFactory
from uploads import oss
from uploads.models import CallbackRefusal, StorageUsage, Upload, UploadTicket
from uploads.services import CallbackFacts, IssuedTicket, callback_handle, ticket_issue
from uploads.services.accept_at_once import accept_at_once
from uploads.services.decision import callback_decide, callback_decide_locked
from uploads.services.ticket_tokens import ticket_token_from, token_claims

Reason = CallbackRefusal.Reason
Mode = UploadTicket.Mode
ACCEPTED = "accepted"
DECLARED = 1000
ETAG = "5EB63BBBE01EEED093CB22BB8F5ACDC3"

# Refused before either path runs, so no row can drive it through them; its own test is below.
DECIDED_BEFORE_THE_PATHS = {Reason.WRONG_BUCKET}


@dataclass(frozen=True)
class Call:
    """What a path is asked to decide: the callback's facts, OSS's HeadObject answer (None: not
    made, or nothing there) and the bucket the callback came for."""

    facts: CallbackFacts
    real: oss.ObjectInfo | None
    bucket: str
    now: datetime


def _issue(user: User, *, mode: str = Mode.STS, content_type: str = "image/png") -> IssuedTicket:
    return ticket_issue(
        user=user, filename="a.png", size=DECLARED, content_type=content_type, mode=mode
    )


def _call(
    issued: IssuedTicket,
    *,
    size: int | None = DECLARED,
    content_type: str = "image/png",
    head: bool = True,
    **changes,
) -> Call:
    """The callback OSS sends for `issued`'s object; with `head`, the HeadObject made of it (as
    for an STS ticket; url and form tickets trust the body and make none)."""
    ticket = issued.ticket
    facts = CallbackFacts(
        bucket=ticket.bucket,
        key=ticket.key,
        etag=ETAG,
        size=size,
        mime_type=content_type,
        width=640,
        height=480,
        image_format="png",
        crc64="1234567890",
        request_id="5C1B138A109F4E405B2D8AEF",
        operation="PutObject",
        token=issued.token,
    )
    facts = replace(facts, **{k: v for k, v in changes.items() if k != "bucket"})
    real = None
    if head:
        real = oss.ObjectInfo(
            key=facts.key,
            size=size or 0,
            etag=ETAG,
            content_type=content_type,
            crc64="1234567890",
            request_id="5C1B138A109F4E405B2D8AEF",
            last_modified=timezone.now(),
        )
    return Call(
        facts=facts, real=real, bucket=changes.get("bucket", ticket.bucket), now=timezone.now()
    )


# --- The table: each row sets up one case and returns the callback to decide ---------------


def accepted(user, settings) -> Call:
    return _call(_issue(user))


def accepted_smaller_than_declared(user, settings) -> Call:
    return _call(_issue(user), size=DECLARED - 1)


def accepted_with_type_parameters(user, settings) -> Call:
    return _call(_issue(user, content_type="image/png"), content_type="IMAGE/PNG; q=1")


def accepted_url_mode_from_the_body(user, settings) -> Call:
    return _call(_issue(user, mode=Mode.URL), head=False)


def accepted_form_mode_from_the_body(user, settings) -> Call:
    return _call(_issue(user, mode=Mode.FORM), head=False)


def accepted_without_head_check(user, settings) -> Call:
    settings.UPLOAD_CALLBACK_HEAD_CHECK = False
    return _call(_issue(user), head=False)


def accepted_filling_the_quota_exactly(user, settings) -> Call:
    issued = _issue(user)
    StorageUsage.objects.filter(user=user).update(
        bytes_used=500, max_bytes=500 + DECLARED, objects_used=4, max_objects=5
    )
    return _call(issued)


def accepted_without_a_usage_row_yet(user, settings) -> Call:
    issued = _issue(user)
    StorageUsage.objects.filter(user=user).delete()  # e.g. a row removed by an admin
    return _call(issued)


def accepted_again_as_a_replay(user, settings) -> Call:
    call = _call(_issue(user))
    first = callback_decide(facts=call.facts, real=call.real, bucket=call.bucket, now=call.now)
    assert first.accepted
    return call


def no_ticket(user, settings) -> Call:
    issued = _issue(user)
    other_key = issued.ticket.key.rsplit("/", 1)[0] + "/unknown.png"
    return _call(issued, key=other_key, token="")


def no_ticket_for_an_unreadable_token(user, settings) -> Call:
    issued = _issue(user)
    return _call(issued, key=issued.ticket.key + ".copy", token="not-a-ticket")


def no_ticket_for_a_token_bound_to_another_owner(user, settings) -> Call:
    issued, other = _issue(user), UserFactory()
    key = issued.ticket.key.replace(user.public_id, other.public_id)
    token = ticket_token_from(
        ticket_id=issued.ticket.id, owner_public_id=other.public_id, bucket=issued.ticket.bucket,
        key=key,
    )  # fmt: skip
    return _call(issued, key=key, token=token)


def ticket_mismatch_for_a_forged_token(user, settings) -> Call:
    issued = _issue(user)
    return _call(issued, token=issued.token[:-4] + "AAAA")


def ticket_mismatch_for_another_key(user, settings) -> Call:
    issued = _issue(user)
    return _call(issued, key=issued.ticket.key + ".copy")


def ticket_mismatch_for_another_bucket(user, settings) -> Call:
    return _call(_issue(user), bucket="another-bucket")


def ticket_mismatch_for_a_claimed_mode(user, settings) -> Call:
    # A url ticket's callback claiming STS (or the reverse) changes what is trusted: the MAC
    # covers the mode, so neither path takes it.
    issued = _issue(user, mode=Mode.URL)
    ticket = issued.ticket
    token = ticket_token_from(
        ticket_id=ticket.id, owner_public_id=user.public_id, bucket=ticket.bucket, key=ticket.key
    )
    return _call(issued, token=token)


def ticket_mismatch_for_an_unknown_ticket(user, settings) -> Call:
    issued = _issue(user)
    ticket = issued.ticket
    token = ticket_token_from(
        ticket_id=uuid.uuid4(), owner_public_id=user.public_id, bucket=ticket.bucket, key=ticket.key
    )
    return _call(issued, token=token)


def ticket_expired(user, settings) -> Call:
    issued = _issue(user)
    call = _call(issued)
    return replace(call, now=issued.ticket.expires_at)


def ticket_expired_by_the_sweep(user, settings) -> Call:
    issued = _issue(user)
    UploadTicket.objects.filter(pk=issued.ticket.pk).update(status=UploadTicket.Status.EXPIRED)
    return _call(issued)


def ticket_used_for_another_object(user, settings) -> Call:
    call = accepted_again_as_a_replay(user, settings)
    return replace(call, facts=replace(call.facts, etag="0" * 32))


def ticket_used_when_refused_without_a_record(user, settings) -> Call:
    issued = _issue(user)
    UploadTicket.objects.filter(pk=issued.ticket.pk).update(status=UploadTicket.Status.REFUSED)
    return _call(issued)


def owner_suspended(user, settings) -> Call:
    issued = _issue(user)
    User.objects.filter(pk=user.pk).update(is_suspended=True)
    return _call(issued)


def size_mismatch(user, settings) -> Call:
    return _call(_issue(user), size=DECLARED + 1)


def size_mismatch_when_the_body_states_none(user, settings) -> Call:
    return _call(_issue(user, mode=Mode.URL), head=False, size=None)


def too_large(user, settings) -> Call:
    issued = _issue(user)
    settings.UPLOAD_MAX_SIZE = DECLARED - 1  # lowered since the ticket was issued
    return _call(issued)


def type_mismatch(user, settings) -> Call:
    return _call(_issue(user), content_type="image/jpeg")


def type_not_allowed(user, settings) -> Call:
    issued = _issue(user)
    settings.UPLOAD_ALLOWED_CONTENT_TYPES = ["video/*"]  # narrowed since the ticket was issued
    return _call(issued)


def quota_exceeded_in_bytes(user, settings) -> Call:
    issued = _issue(user)
    StorageUsage.objects.filter(user=user).update(bytes_used=501, max_bytes=500 + DECLARED)
    return _call(issued)


def quota_exceeded_in_objects(user, settings) -> Call:
    issued = _issue(user)
    StorageUsage.objects.filter(user=user).update(objects_used=5, max_objects=5)
    return _call(issued)


def quota_exceeded_by_the_settings(user, settings) -> Call:
    issued = _issue(user)
    settings.UPLOAD_QUOTA_BYTES = DECLARED - 1  # no override on the row: the setting counts
    return _call(issued)


def object_missing(user, settings) -> Call:
    return _call(_issue(user), head=False)


@dataclass(frozen=True)
class Rule:
    setup: Callable[[User, object], Call]
    verdict: str  # ACCEPTED or a CallbackRefusal.Reason
    # The fast path accepts every accepted row but these, which it leaves to the locked path.
    fast_path_leaves_it: bool = False


RULES = [
    Rule(accepted, ACCEPTED),
    Rule(accepted_smaller_than_declared, ACCEPTED),
    Rule(accepted_with_type_parameters, ACCEPTED),
    Rule(accepted_url_mode_from_the_body, ACCEPTED),
    Rule(accepted_form_mode_from_the_body, ACCEPTED),
    Rule(accepted_without_head_check, ACCEPTED),
    Rule(accepted_filling_the_quota_exactly, ACCEPTED),
    Rule(accepted_without_a_usage_row_yet, ACCEPTED, fast_path_leaves_it=True),
    Rule(accepted_again_as_a_replay, ACCEPTED, fast_path_leaves_it=True),
    Rule(no_ticket, Reason.NO_TICKET),
    Rule(no_ticket_for_an_unreadable_token, Reason.NO_TICKET),
    Rule(no_ticket_for_a_token_bound_to_another_owner, Reason.NO_TICKET),
    Rule(ticket_mismatch_for_a_forged_token, Reason.TICKET_MISMATCH),
    Rule(ticket_mismatch_for_another_key, Reason.TICKET_MISMATCH),
    Rule(ticket_mismatch_for_another_bucket, Reason.TICKET_MISMATCH),
    Rule(ticket_mismatch_for_a_claimed_mode, Reason.TICKET_MISMATCH),
    Rule(ticket_mismatch_for_an_unknown_ticket, Reason.TICKET_MISMATCH),
    Rule(ticket_expired, Reason.TICKET_EXPIRED),
    Rule(ticket_expired_by_the_sweep, Reason.TICKET_EXPIRED),
    Rule(ticket_used_for_another_object, Reason.TICKET_USED),
    Rule(ticket_used_when_refused_without_a_record, Reason.TICKET_USED),
    Rule(owner_suspended, Reason.OWNER_SUSPENDED),
    Rule(size_mismatch, Reason.SIZE_MISMATCH),
    Rule(size_mismatch_when_the_body_states_none, Reason.SIZE_MISMATCH),
    Rule(too_large, Reason.TOO_LARGE),
    Rule(type_mismatch, Reason.TYPE_MISMATCH),
    Rule(type_not_allowed, Reason.TYPE_NOT_ALLOWED),
    Rule(quota_exceeded_in_bytes, Reason.QUOTA_EXCEEDED),
    Rule(quota_exceeded_in_objects, Reason.QUOTA_EXCEEDED),
    Rule(quota_exceeded_by_the_settings, Reason.QUOTA_EXCEEDED),
    Rule(object_missing, Reason.OBJECT_MISSING),
]


# --- Running a row through a path --------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    verdict: str
    rows: dict


def _rows(owner: User, key: str) -> dict:
    """Everything a decision writes, without what differs by construction between two runs of
    the same decision (ids drawn from sequences, the clock of the write itself)."""
    upload_fields = [
        "owner_id", "ticket_id", "bucket", "key", "filename", "size", "etag", "crc64",
        "content_type", "image_width", "image_height", "image_format", "metadata",
        "oss_request_id", "status", "verified_at",
    ]  # fmt: skip
    refusal_fields = [
        "reason", "message", "owner_id", "ticket_id", "bucket", "key", "size", "content_type",
        "oss_request_id", "object_removed",
    ]  # fmt: skip
    return {
        "usage": list(
            StorageUsage.objects.filter(user=owner).values(
                "bytes_used", "objects_used", "bytes_reserved", "objects_reserved"
            )
        ),
        "tickets": list(
            UploadTicket.objects.filter(owner=owner)
            .order_by("created_at", "id")
            .values("id", "status", "reserved_bytes", "used_at")
        ),
        "uploads": list(Upload.objects.filter(owner=owner).order_by("id").values(*upload_fields)),
        "refusals": list(
            CallbackRefusal.objects.filter(key__startswith=key.rsplit("/", 1)[0])
            .order_by("id")
            .values(*refusal_fields)
        ),
    }


def _in_a_savepoint(run: Callable[[], str], owner: User, key: str) -> Outcome:
    """Run a path, read what it wrote, and roll it back: the next path starts from the same rows."""
    savepoint = transaction.savepoint()
    try:
        verdict = run()
        return Outcome(verdict, _rows(owner, key))
    finally:
        transaction.savepoint_rollback(savepoint)


def _verdict_of(answer) -> str:
    return ACCEPTED if answer.accepted else answer.body["error"]["code"]


def _through_the_locked_path(call: Call) -> str:
    return _verdict_of(
        callback_decide_locked(facts=call.facts, real=call.real, bucket=call.bucket, now=call.now)
    )


def _through_callback_decide(call: Call) -> str:
    return _verdict_of(
        callback_decide(facts=call.facts, real=call.real, bucket=call.bucket, now=call.now)
    )


def _through_the_fast_path_alone(call: Call) -> str:
    claims = token_claims(call.facts.token)
    if claims is None:
        return "left to the locked path"
    upload = accept_at_once(
        ticket_id=claims[0],
        mode=claims[1],
        facts=call.facts,
        real=call.real,
        bucket=call.bucket,
        now=call.now,
    )
    return ACCEPTED if upload is not None else "left to the locked path"


@pytest.mark.parametrize("rule", RULES, ids=[rule.setup.__name__ for rule in RULES])
def test_both_paths_give_the_same_verdict_and_rows(rule, alibaba, settings, db):
    # The emulator: a refused upload's object is removed with a real DeleteObject.
    owner = UserFactory()
    StorageUsageFactory(user=owner)
    call = rule.setup(owner, settings)
    before = _rows(owner, call.facts.key)

    locked = _in_a_savepoint(lambda: _through_the_locked_path(call), owner, call.facts.key)
    decided = _in_a_savepoint(lambda: _through_callback_decide(call), owner, call.facts.key)
    fast = _in_a_savepoint(lambda: _through_the_fast_path_alone(call), owner, call.facts.key)

    assert locked.verdict == rule.verdict
    assert decided.verdict == locked.verdict
    for table in locked.rows:
        assert decided.rows[table] == locked.rows[table], table
    if rule.verdict == ACCEPTED and not rule.fast_path_leaves_it:
        assert fast.verdict == ACCEPTED
        assert fast.rows == locked.rows
    else:
        assert fast.verdict == "left to the locked path"
        assert fast.rows == before
    if rule.verdict != ACCEPTED:  # a refusal is recorded, with the reason the row names
        assert [r["reason"] for r in locked.rows["refusals"]][-1:] == [rule.verdict]


def test_the_table_names_every_refusal_reason():
    covered = {rule.verdict for rule in RULES} | DECIDED_BEFORE_THE_PATHS
    assert covered == {ACCEPTED, *Reason}


def test_a_callback_for_another_bucket_is_refused_before_either_path(alibaba, settings, db):
    owner = UserFactory()
    issued = _issue(owner)
    body = (
        f"bucket=another-bucket&object={issued.ticket.key}&etag={ETAG}&size={DECLARED}"
        f"&mimeType=image%2Fpng&ticket={issued.token}"
    ).encode()
    before = _rows(owner, issued.ticket.key)

    answer = callback_handle(body=body, content_type="application/x-www-form-urlencoded")

    assert _verdict_of(answer) == Reason.WRONG_BUCKET
    after = _rows(owner, issued.ticket.key)
    assert after["tickets"] == before["tickets"] and after["usage"] == before["usage"]
    refusal = CallbackRefusal.objects.get(reason=Reason.WRONG_BUCKET)
    assert (refusal.bucket, refusal.ticket_id, refusal.object_removed) == (
        "another-bucket",
        None,
        False,
    )
