"""One description of a ticket's reservation, held against both paths that make it.

PostgreSQL reserves in one statement (`_reserve_at_once`), other databases on the locked path
(`_reserve_locked`). CASES is the one table: each row sets up the owner's usage and tickets,
names the verdict (written, or the refusal's message), and runs through both paths from the
same rows (each in a savepoint rolled back after). Both must give that verdict and leave the
same rows: the usage counters and every ticket's status and reservation. A rule added to one
path and not the other fails here.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import psycopg
import pytest
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import User
from tests.factories import StorageUsageFactory, UploadTicketFactory, UserFactory
from uploads.models import StorageUsage, UploadTicket
from uploads.services import QuotaExceeded
from uploads.services.reservation import TicketRow, _reserve_at_once, _reserve_locked

Status = UploadTicket.Status
PATHS = {"locked": _reserve_locked, "at once": _reserve_at_once}
SIZE = 1000
WRITTEN = "written"


def _overdue(user: User, size: int) -> None:
    UploadTicketFactory(
        owner=user, declared_size=size, expires_at=timezone.now() - timedelta(minutes=1)
    )


def _pending(user: User, size: int) -> None:
    UploadTicketFactory(owner=user, declared_size=size)


@dataclass(frozen=True)
class Case:
    name: str
    setup: Callable[[User], None]
    verdict: str  # WRITTEN, or the start of QuotaExceeded's message


def _usage(**fields) -> Callable[[User], None]:
    def setup(user: User) -> None:
        StorageUsageFactory(user=user, **fields)

    return setup


def _then(*steps: Callable[[User], None]) -> Callable[[User], None]:
    def setup(user: User) -> None:
        for step in steps:
            step(user)

    return setup


CASES = [
    Case("first reservation, no usage row yet", lambda user: None, WRITTEN),
    Case("fits under the settings' quota", _usage(bytes_used=5000, objects_used=3), WRITTEN),
    Case("fits exactly", _usage(max_bytes=SIZE + 500, bytes_used=500), WRITTEN),
    Case("one byte over", _usage(max_bytes=SIZE + 499, bytes_used=500), "This upload needs"),
    Case(
        "pending tickets count",
        _then(_usage(max_bytes=2500), lambda u: _pending(u, 2000)),
        "This upload needs 1000 bytes; 500 are left",
    ),
    Case(
        "the object limit",
        _usage(max_objects=2, objects_used=1, objects_reserved=1),
        "You already have the 2 files allowed.",
    ),
    Case(
        "pending tickets count as objects",
        _then(_usage(max_objects=1), lambda u: _pending(u, 10)),
        "You already have the 1 files allowed.",
    ),
    Case(
        "overdue tickets give their room back",
        _then(_usage(max_bytes=2500), lambda u: _overdue(u, 2000), lambda u: _overdue(u, 300)),
        WRITTEN,
    ),
    Case(
        "overdue tickets give their objects back",
        _then(_usage(max_objects=1), lambda u: _overdue(u, 10)),
        WRITTEN,
    ),
    Case(
        "refused even after expiry: the overdue tickets stay as they were",
        _then(_usage(max_bytes=2500, bytes_used=1800), lambda u: _overdue(u, 400)),
        "This upload needs 1000 bytes; 700 are left",
    ),
    Case(
        "overdue and pending together",
        _then(_usage(max_bytes=4000), lambda u: _overdue(u, 2500), lambda u: _pending(u, 2500)),
        WRITTEN,
    ),
]

# The factories reserve without touching the usage row; the rows the services write keep the two
# equal, so the setup does too.


def _reconcile(user: User) -> None:
    usage, _ = StorageUsage.objects.get_or_create(user=user)
    issued = UploadTicket.objects.filter(owner=user, status=Status.ISSUED)
    usage.bytes_reserved += sum(t.reserved_bytes for t in issued)
    usage.objects_reserved += issued.count()
    usage.save()


def _rows(user: User) -> tuple:
    usage = (
        StorageUsage.objects.filter(user=user)
        .values_list("bytes_used", "objects_used", "bytes_reserved", "objects_reserved")
        .first()
    )
    tickets = sorted(
        UploadTicket.objects.filter(owner=user).values_list(
            "declared_size", "status", "reserved_bytes", "mode", "content_type"
        )
    )
    return usage, tickets


def _row(user: User) -> TicketRow:
    now = timezone.now()
    return TicketRow(
        id=uuid.uuid4(),
        owner_id=user.pk,
        key=f"users/{user.public_id}/new/{uuid.uuid4().hex}.png",
        filename="new.png",
        size=SIZE,
        content_type="image/png",
        metadata={"album": "a"},
        mode=UploadTicket.Mode.STS,
        now=now,
        expires_at=now + timedelta(minutes=15),
    )


def _run(path, user: User) -> tuple[str, tuple]:
    sid = transaction.savepoint()
    try:
        try:
            ticket = path(row=_row(user))
            verdict = WRITTEN
            stored = UploadTicket.objects.get(pk=ticket.pk)
            assert (stored.key, stored.metadata, stored.bucket) == (
                ticket.key,
                {"album": "a"},
                settings.OSS_BUCKET,
            )
            assert stored.created_at is not None and stored.expires_at == ticket.expires_at
        except QuotaExceeded as error:
            verdict = str(error.message)
        return verdict, _rows(user)
    finally:
        transaction.savepoint_rollback(sid)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_both_paths_reserve_alike(db, case):
    user = UserFactory()
    case.setup(user)
    if StorageUsage.objects.filter(user=user).exists():
        _reconcile(user)
    before = _rows(user)
    results = {name: _run(path, user) for name, path in PATHS.items()}
    for name, (verdict, rows) in results.items():
        assert verdict.startswith(case.verdict), (name, verdict)
        if verdict != WRITTEN:
            assert rows == before, f"{name} wrote something when refusing"
    assert results["locked"] == results["at once"]
    if case.verdict == WRITTEN:
        # The usage row holds exactly what the issued tickets reserve, the new one included;
        # overdue ones are expired with nothing reserved.
        usage, tickets = results["at once"][1]
        issued = [t for t in tickets if t[1] == Status.ISSUED]
        assert (SIZE, Status.ISSUED, SIZE) in {t[:3] for t in issued}
        assert usage[2:] == (sum(t[2] for t in issued), len(issued))
        assert all(t[2] == 0 for t in tickets if t[1] == Status.EXPIRED)


def test_a_ticket_a_callback_holds_is_left_to_it(transactional_db):
    """An overdue ticket locked by a callback in flight is skipped by both paths (the callback
    settles it); they neither wait for it nor release its reservation."""
    user = UserFactory()
    StorageUsageFactory(user=user, max_bytes=2500)
    _overdue(user, 2000)
    _reconcile(user)
    held = UploadTicket.objects.get(owner=user)
    dsn = " ".join(
        f"{k}={v}"
        for k, v in connection.get_connection_params().items()
        if k in ("dbname", "host", "port", "user", "password") and v
    )
    with psycopg.connect(dsn) as other:
        other.execute("SELECT id FROM uploads_uploadticket WHERE id = %s FOR UPDATE", [held.pk])
        for name, path in PATHS.items():
            outcome: dict = {}

            def reserve(path=path, outcome=outcome) -> None:
                try:
                    path(row=_row(user))
                    outcome["verdict"] = WRITTEN
                except QuotaExceeded as error:
                    outcome["verdict"] = str(error.message)
                finally:
                    connection.close()

            worker = threading.Thread(target=reserve)
            worker.start()
            worker.join(timeout=10)
            assert not worker.is_alive(), f"{name} waited for the held ticket"
            assert outcome["verdict"].startswith("This upload needs 1000 bytes; 500 are left")
        other.rollback()
    held.refresh_from_db()
    assert (held.status, held.reserved_bytes) == (Status.ISSUED, 2000)
    usage = StorageUsage.objects.get(user=user)
    assert (usage.bytes_reserved, usage.objects_reserved) == (2000, 1)
