"""`manage.py deliver_events` as the real process it is: killed mid-delivery, nothing is lost
(the next worker delivers the event again, at least once); SIGTERM ends it cleanly; two workers
at once deliver each user's events in order."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from django.db import connection, transaction

from events.models import Delivery, EventType
from events.services import event_record
from tests.processes import ROOT, _wait, app_environment, database_url, run_manage

pytestmark = pytest.mark.django_db(transaction=True)


def _env(**extra: str) -> dict[str, str]:
    return app_environment(
        DATABASE_URL=database_url(connection),
        EVENTS_ALLOW_PRIVATE_ADDRESSES="true",
        EVENTS_RETRY_BASE_SECONDS="0.01",
        EVENTS_RETRY_MAX_SECONDS="0.05",
        **extra,
    )


def _worker(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "deliver_events"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _record(user: str, n: int) -> list:
    with transaction.atomic():
        return [
            event_record(type=EventType.UPLOAD_ACCEPTED, user_public_id=user, data={"n": i})
            for i in range(n)
        ]


def test_a_worker_killed_mid_delivery_loses_nothing(endpoint, receiver):
    receiver.script = ["hold"]  # the first request hangs until released
    first, second = _record("u1", 2)
    worker = _worker(_env(EVENTS_READ_TIMEOUT_SECONDS="60"))
    try:
        _wait(receiver.holding.is_set, "the first delivery reaching the receiver")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    receiver.release()
    # The killed worker's transaction rolled back with its connection: still pending.
    _wait(
        lambda: Delivery.objects.filter(state=Delivery.State.PENDING).count() == 2,
        "the killed worker's claim released",
    )
    result = run_manage("deliver_events", "--once", env=_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(Delivery.objects.values_list("state", flat=True)) == {Delivery.State.DELIVERED}
    # At least once: the first event came twice (the same id), then the second, in order.
    assert receiver.ids() == [str(first.uid), str(first.uid), str(second.uid)]
    assert all(r.signed for r in receiver.received)


def test_sigterm_stops_the_worker_cleanly(endpoint, receiver):
    worker = _worker(_env())
    try:
        (event,) = _record("u1", 1)
        _wait(lambda: receiver.ids() == [str(event.uid)], "the event delivered")
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=20)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0
    assert "Delivered 1, retrying 0, parked 0." in output


def test_two_workers_keep_each_users_order(endpoint, receiver):
    events = []
    for _ in range(10):
        for user in ("a", "b", "c", "d"):
            events += _record(user, 3)
    receiver.failures = {str(e.uid): 1 for e in events[::7]}  # some fail once
    workers = [_worker(_env()), _worker(_env())]
    try:
        _wait(
            lambda: (
                not Delivery.objects.exclude(state=Delivery.State.DELIVERED).exists()
                and Delivery.objects.count() == len(events)
            ),
            "every event delivered",
            timeout=60,
        )
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.communicate(timeout=20)
    by_id = {str(e.uid): e for e in events}
    delivered_ids = [i for i in receiver.ids()]
    for user in ("a", "b", "c", "d"):
        mine = [by_id[i].pk for i in delivered_ids if by_id[i].user_public_id == user]
        # In order; a failed one is repeated at once (nothing of its user overtakes it).
        assert [pk for i, pk in enumerate(mine) if i == 0 or pk != mine[i - 1]] == sorted(
            e.pk for e in events if e.user_public_id == user
        )
