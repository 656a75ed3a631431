"""The mobile app's client side, in Python: what docs/mobile-integration.md asks an app to do.

Each piece mirrors one part of the guide, with oss2 standing in for the mobile SDKs:

- `AppSession`: the signed-in user's JWT pair. A 401 refreshes once and retries; the refresh is
  single-flight (the server rotates refresh tokens and each is good once, so two refreshes at
  the same time would log the user out).
- `AppCredentialsProvider`: what the SDKs' federation credential provider does (cache the STS
  answer, fetch again 5 minutes before `Expiration`), plus what they cannot do: tell an expired
  session, a suspension or `Retry-After` apart instead of retrying blindly.
- `PendingUploads`: the tickets of uploads in progress, on disk before the first byte goes up,
  so a killed app resumes them (the SDKs' checkpoint keeps only the upload id) or aborts them
  once the ticket has expired.
- `upload_continue`: a resumable multipart upload (InitiateMultipartUpload with the ticket's
  Content-Type, the parts OSS does not have yet, CompleteMultipartUpload with the ticket's
  headers) whose HTTP 203 CallbackFailed is settled by the confirm endpoint, never by sending
  the bytes again.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import oss2
import requests

TIMEOUT = 15
MIN_PART_SIZE = 100 * 1024  # OSS refuses smaller parts (except the last)
EXPIRATION_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# The SDKs fetch new STS credentials this long before `Expiration` (both hard-code 5 minutes).
CREDENTIALS_MARGIN = timedelta(minutes=5)


class ApiError(Exception):
    """A 4xx/5xx of the app server, with its machine-readable code and `Retry-After`."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None):
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after

    @classmethod
    def from_response(cls, response: requests.Response) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = {}
        # The credentials endpoint keeps the STS sample's shape; every other one nests "error".
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        code = error.get("code") or body.get("ErrorCode") or "http_error"
        message = error.get("message") or body.get("ErrorMessage") or response.text[:300]
        retry_after = response.headers.get("Retry-After")
        return cls(response.status_code, code, message, int(retry_after) if retry_after else None)


class SessionExpired(ApiError):
    """The refresh token was refused: the user has to log in again."""


class AppSession:
    """One signed-in user. Thread-safe: uploads, listing and the credentials provider share it."""

    def __init__(self, *, base_url: str, access: str, refresh: str, username: str = "") -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._http = requests.Session()
        self._access, self._refresh = access, refresh
        self._refresh_lock = threading.Lock()
        self.refreshes = 0  # how many refreshes this session sent (each rotates the pair)

    @classmethod
    def login(cls, *, base_url: str, username: str, password: str) -> AppSession:
        response = requests.post(
            f"{base_url.rstrip('/')}/api/auth/login/",
            json={"username": username, "password": password},
            timeout=TIMEOUT,
        )
        if response.status_code != 200:
            raise ApiError.from_response(response)
        pair = response.json()
        return cls(
            base_url=base_url, access=pair["access"], refresh=pair["refresh"], username=username
        )

    @property
    def access_token(self) -> str:
        return self._access

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """The request with the current access token; on 401, one refresh and one retry."""
        kwargs.setdefault("timeout", TIMEOUT)
        if not self._refresh:
            raise SessionExpired(401, "logged_out", "This session was logged out.")
        for attempt in (1, 2):
            sent_with = self._access
            response = self._http.request(
                method,
                self.base_url + path,
                headers={"Authorization": f"Bearer {sent_with}"},
                **kwargs,
            )
            if response.status_code != 401 or attempt == 2:
                return response
            self.refresh(failed_access=sent_with)
        raise AssertionError("unreachable")

    def api(self, method: str, path: str, **kwargs: Any) -> dict:
        response = self.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise ApiError.from_response(response)
        return response.json() if response.content else {}

    def refresh(self, *, failed_access: str) -> None:
        """Single flight: whoever holds the lock refreshes; a caller whose token was already
        replaced meanwhile just retries with the new one instead of spending the refresh token
        a second time (the server would take that for a stolen token)."""
        with self._refresh_lock:
            if self._access != failed_access:
                return
            response = self._http.post(
                f"{self.base_url}/api/auth/refresh/",
                json={"refresh": self._refresh},
                timeout=TIMEOUT,
            )
            if response.status_code != 200:
                error = ApiError.from_response(response)
                raise SessionExpired(error.status, error.code, error.message, error.retry_after)
            pair = response.json()
            self._access, self._refresh = pair["access"], pair["refresh"]
            self.refreshes += 1

    def logout(self) -> None:
        """Blacklists the refresh token; the session is unusable afterwards."""
        self._http.post(
            f"{self.base_url}/api/auth/logout/", json={"refresh": self._refresh}, timeout=TIMEOUT
        )
        self._access = self._refresh = ""
        self._http.close()


class AppCredentialsProvider(oss2.credentials.CredentialsProvider):
    """STS credentials for one session (the SDKs' OSSFederationCredentialProvider with a JWT).

    Raises `ApiError` with the server's code instead of returning nothing: 401 after a refresh
    (`SessionExpired`, log in again), 403 `account_suspended` (stop), 429/503 (wait
    `retry_after` seconds). A new user gets a new provider: this one holds its user's keys.
    """

    def __init__(self, session: AppSession, *, scope: str = "readwrite") -> None:
        self.session, self.scope = session, scope
        self._lock = threading.Lock()
        self._answer: dict | None = None
        self._expires_at: datetime | None = None
        self.fetches = 0

    def get_credentials(self) -> oss2.credentials.Credentials:
        answer = self.answer()
        return oss2.credentials.Credentials(
            answer["AccessKeyId"], answer["AccessKeySecret"], answer["SecurityToken"]
        )

    def answer(self) -> dict:
        """The current credentials answer, fetched when missing or close to `Expiration`."""
        with self._lock:
            now = datetime.now(UTC)
            if self._answer is None or now >= self._expires_at - CREDENTIALS_MARGIN:
                self._answer = self._fetch()
                self._expires_at = datetime.strptime(
                    self._answer["Expiration"], EXPIRATION_FORMAT
                ).replace(tzinfo=UTC)
            return self._answer

    def forget(self) -> None:
        """Drop the cached keys (log out, switch user)."""
        with self._lock:
            self._answer = self._expires_at = None

    def _fetch(self) -> dict:
        response = self.session.request(
            "GET", "/api/sts/credentials/", params={"scope": self.scope}
        )
        if response.status_code == 401:
            error = ApiError.from_response(response)
            raise SessionExpired(error.status, error.code, error.message)
        body = response.json() if response.content else {}
        if response.status_code != 200 or str(body.get("StatusCode")) != "200":
            raise ApiError.from_response(response)
        self.fetches += 1
        return body


def oss_bucket(
    provider: AppCredentialsProvider,
    *,
    endpoint: str,
    bucket: str,
    region: str,
    signature_version: str = "v4",
    path_style: bool = False,
) -> oss2.Bucket:
    auth = (
        oss2.ProviderAuthV4(provider) if signature_version == "v4" else oss2.ProviderAuth(provider)
    )
    return oss2.Bucket(
        auth,
        endpoint,
        bucket,
        region=region,
        # oss2 uses path style for IP addresses and localhost by itself; a host name such as a
        # docker-compose service name needs it said.
        is_path_style=path_style,
        connect_timeout=TIMEOUT,
    )


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
    result = bucket.put_object(ticket["key"], data, headers=headers)
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


def bucket_for(
    provider: AppCredentialsProvider,
    ticket: dict,
    *,
    signature_version: str = "v4",
    path_style: bool = False,
) -> oss2.Bucket:
    return oss_bucket(
        provider,
        endpoint=ticket["endpoint"],
        bucket=ticket["bucket"],
        region=ticket["region"],
        signature_version=signature_version,
        path_style=path_style,
    )


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
