"""Many parallel ticket requests and callbacks never push a user past the quota."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from uploads.models import StorageUsage, Upload

pytestmark = pytest.mark.django_db(transaction=True)


def test_parallel_tickets_and_callbacks_respect_the_quota(live, user, settings):
    settings.UPLOAD_QUOTA_BYTES = 50
    bucket = live.bucket(user)

    def ask(_):
        return live.api(
            "POST",
            "/api/uploads/tickets/",
            user,
            json={"filename": "a.txt", "size": 10, "content_type": "text/plain"},
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(ask, range(12)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 5 + [403] * 7
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 403} == {
        "quota_exceeded"
    }
    tickets = [r.json() for r in responses if r.status_code == 201]
    usage = StorageUsage.objects.get(user=user)
    assert (usage.bytes_reserved, usage.objects_reserved) == (50, 5)

    # Staff lower the quota meanwhile: the callbacks race to commit, only 3 may fit.
    StorageUsage.objects.filter(user=user).update(max_bytes=30)

    def upload(ticket):
        result = bucket.put_object(
            ticket["key"], b"x" * 10, headers={**ticket["headers"], "Content-Type": "text/plain"}
        )
        return json.loads(result.resp.read())

    with ThreadPoolExecutor(max_workers=5) as pool:
        answers = list(pool.map(upload, tickets))
    # Reservations of pending tickets count, so some callbacks are refused even though, once
    # all are done, there would have been room: the quota is never exceeded at any moment.
    accepted = [a for a in answers if a["ok"]]
    refused = [a for a in answers if not a["ok"]]
    assert {a["error"]["code"] for a in refused} <= {"quota_exceeded"}
    usage.refresh_from_db()
    assert usage.bytes_used == 10 * len(accepted) <= 30
    assert (usage.bytes_reserved, usage.objects_reserved) == (0, 0)
    assert Upload.objects.count() == len(accepted) == usage.objects_used
    assert len(accepted) >= 1
