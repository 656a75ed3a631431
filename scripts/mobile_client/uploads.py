"""Uploads with a ticket: saved before the first byte, resumed after a kill, aborted when stale,
settled by the confirm endpoint after 203 or a lost answer."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import oss2

from .session import ApiError, AppCredentialsProvider, AppSession, bucket_for

MIN_PART_SIZE = 100 * 1024  # OSS refuses smaller parts (except the last)


class PendingUploads:
    """One JSON file per upload in progress (ticket, file, part size, upload id), written
    atomically before the first request to OSS and removed once the server has answered."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def save(self, record: dict) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{record['ticket']['id']}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(record, sort_keys=True))
        os.replace(temporary, path)

    def remove(self, record: dict) -> None:
        (self.directory / f"{record['ticket']['id']}.json").unlink(missing_ok=True)

    def all(self) -> list[dict]:
        return [json.loads(path.read_text()) for path in sorted(self.directory.glob("*.json"))]

    def leftovers(self) -> list[Path]:
        """Files kept here for uploads that are no longer pending."""
        pending = {record["file"] for record in self.all()}
        return [
            path for path in self.directory.glob("*.data") if str(path.resolve()) not in pending
        ]


@dataclass(frozen=True)
class UploadOutcome:
    answer: dict  # the server's answer: {"ok": true, "upload": {...}} or {"ok": false, ...}
    parts_sent: int  # parts sent by this call (a resumed upload skips what OSS already has)
    confirmed: bool  # OSS answered 203 CallbackFailed and the confirm endpoint settled it


def ticket_expired(ticket: dict, *, now: datetime | None = None) -> bool:
    expires_at = datetime.fromisoformat(ticket["expires_at"])
    return (now or datetime.now(UTC)) >= expires_at


def initiate_headers(ticket: dict) -> dict[str, str]:
    """InitiateMultipartUpload fixes the object's Content-Type: always the ticket's, never a guess
    from the file name. The callback headers belong to the completion only."""
    headers = {
        name: value
        for name, value in ticket["headers"].items()
        if not name.lower().startswith("x-oss-callback")
    }
    headers["Content-Type"] = ticket["content_type"]
    return headers


def upload_start(
    store: PendingUploads, *, ticket: dict, path: Path, part_size: int = MIN_PART_SIZE
) -> dict:
    """Record the upload before any byte goes up: a process killed from here on resumes it."""
    record = {
        "ticket": ticket,
        "file": str(Path(path).resolve()),
        "size": Path(path).stat().st_size,
        "part_size": max(part_size, MIN_PART_SIZE),
        "upload_id": None,
    }
    store.save(record)
    return record


def upload_continue(
    session: AppSession,
    bucket: oss2.Bucket,
    store: PendingUploads,
    record: dict,
    *,
    after_part: Callable[[int], None] | None = None,
) -> UploadOutcome:
    """Send what OSS does not have yet and complete with the ticket's callback."""
    ticket = record["ticket"]
    key = ticket["key"]
    done: dict[int, oss2.models.PartInfo] = {}
    if record["upload_id"]:
        try:
            for part in oss2.PartIterator(bucket, key, record["upload_id"]):
                done[part.part_number] = part
        except oss2.exceptions.NoSuchUpload:
            # Completed by a process killed before it read the answer, or aborted meanwhile
            # (a lifecycle rule): the server looks; only when nothing is stored, start over.
            answer = ticket_confirm(session, ticket)
            if answer is not None:
                store.remove(record)
                return UploadOutcome(answer=answer, parts_sent=0, confirmed=True)
            record["upload_id"] = None
    if not record["upload_id"]:
        init = bucket.init_multipart_upload(key, headers=initiate_headers(ticket))
        record["upload_id"] = init.upload_id
        store.save(record)
    sent = 0
    count = max(1, math.ceil(record["size"] / record["part_size"]))
    with open(record["file"], "rb") as source:
        for number in range(1, count + 1):
            if number in done:
                continue
            source.seek((number - 1) * record["part_size"])
            chunk = source.read(record["part_size"])
            result = bucket.upload_part(key, record["upload_id"], number, chunk)
            done[number] = oss2.models.PartInfo(number, result.etag, size=len(chunk))
            sent += 1
            if after_part is not None:
                after_part(number)
    result = bucket.complete_multipart_upload(
        key, record["upload_id"], [done[n] for n in sorted(done)], headers=ticket["headers"]
    )
    outcome = settle(session, ticket, result, parts_sent=sent)
    store.remove(record)
    return outcome


def put_small(
    session: AppSession, bucket: oss2.Bucket, *, ticket: dict, data: bytes
) -> UploadOutcome:
    """PutObject for a small file: the ticket's headers as given plus its Content-Type."""
    headers = {**ticket["headers"], "Content-Type": ticket["content_type"]}
    try:
        result = bucket.put_object(ticket["key"], data, headers=headers)
    except oss2.exceptions.OssError as exc:
        # x-oss-forbid-overwrite: an earlier attempt stored the object and its answer was lost.
        answer = ticket_confirm(session, ticket) if exc.code == "FileAlreadyExists" else None
        if answer is None:
            raise
        return UploadOutcome(answer=answer, parts_sent=1, confirmed=True)
    return settle(session, ticket, result, parts_sent=1)


def settle(session: AppSession, ticket: dict, result: Any, *, parts_sent: int) -> UploadOutcome:
    """The server's answer relayed by OSS; on 203 CallbackFailed (the object is stored, the
    server did not answer OSS in time) ask the server to check the object instead."""
    body = result.resp.read().decode("utf-8", "replace")
    if result.status == 203:
        answer = ticket_confirm(session, ticket)
        if answer is None:
            raise ApiError(409, "object_missing", "OSS answered 203 but stored nothing.")
        return UploadOutcome(answer=answer, parts_sent=parts_sent, confirmed=True)
    return UploadOutcome(answer=json.loads(body), parts_sent=parts_sent, confirmed=False)


def ticket_confirm(session: AppSession, ticket: dict) -> dict | None:
    """The server's answer for what OSS stores under the ticket's key (the callback's shape),
    or None when nothing is stored there yet."""
    try:
        return session.api("POST", f"/api/uploads/tickets/{ticket['id']}/confirm/")
    except ApiError as exc:
        if exc.status == 409 and exc.code == "object_missing":
            return None
        raise


def uploads_resume(
    session: AppSession,
    provider: AppCredentialsProvider,
    store: PendingUploads,
    *,
    signature_version: str = "v4",
    path_style: bool = False,
    now: datetime | None = None,
) -> tuple[list[UploadOutcome], list[dict]]:
    """At start-up: finish the uploads a killed process left, abort the stale ones (their
    ticket expired, so the server would refuse the callback: a new ticket means a new key)."""
    finished, aborted = [], []
    prefix = provider.answer()["Prefix"]
    for record in store.all():
        ticket = record["ticket"]
        if not ticket["key"].startswith(prefix):
            continue  # another user's upload: only their credentials reach it
        bucket = bucket_for(
            provider, ticket, signature_version=signature_version, path_style=path_style
        )
        if ticket_expired(ticket, now=now):
            try:
                if record["upload_id"]:
                    bucket.abort_multipart_upload(ticket["key"], record["upload_id"])
            except oss2.exceptions.NoSuchUpload:
                # Completed before the process died: stored in time, it may still count.
                answer = ticket_confirm(session, ticket)
                if answer is not None:
                    store.remove(record)
                    finished.append(UploadOutcome(answer=answer, parts_sent=0, confirmed=True))
                    continue
            store.remove(record)
            aborted.append(record)
            continue
        finished.append(upload_continue(session, bucket, store, record))
    return finished, aborted
