"""`make demo`'s client, run against the app under live_server and the emulator over real HTTP:
the sequence docs/mobile-integration.md describes (login, credentials through a provider,
ticket, Content-Type from the ticket, PutObject or a resumable multipart upload, list, signed
download, user switch), plus what a phone lives through: a killed process, an expired ticket,
parallel 401s and a suspension."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import oss2
import pytest
import requests
from rest_framework_simplejwt.tokens import AccessToken

from accounts.services import user_suspend
from scripts import mobile_client as app
from scripts.demo_client import DemoError, demo_png, run_demo
from tests.factories import PASSWORD, UserFactory
from uploads.models import Upload, UploadTicket

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def live_callbacks(alibaba, live_server, settings) -> str:
    settings.OSS_CALLBACK_URL = live_server.url + "/api/oss/callback/"
    return live_server.url


def _steps(lines: list[str]) -> list[str]:
    return [line[:2] for line in lines if line[:1].isdigit()]


def _session(base_url: str, user) -> app.AppSession:
    return app.AppSession.login(base_url=base_url, username=user.username, password=PASSWORD)


def _expired_access(user) -> str:
    token = AccessToken.for_user(user)
    token.set_exp(from_time=datetime.now(UTC) - timedelta(hours=1))
    return str(token)


def _login_pair(base_url: str, user) -> dict:
    return requests.post(
        f"{base_url}/api/auth/login/",
        json={"username": user.username, "password": PASSWORD},
        timeout=15,
    ).json()


def _take_ticket(session: app.AppSession, data: bytes, **fields) -> dict:
    return session.api(
        "POST",
        "/api/uploads/tickets/",
        json={"filename": "clip.png", "size": len(data), "content_type": "image/png", **fields},
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("signature_version", ["v1", "v4"])
def test_demo_uploads_lists_downloads_and_switches_user(
    live_callbacks, alibaba, signature_version, tmp_path
):
    user, other = UserFactory(), UserFactory()
    lines: list[str] = []

    result = run_demo(
        base_url=live_callbacks,
        username=user.username,
        password=PASSWORD,
        say=lines.append,
        signature_version=signature_version,
        state_dir=tmp_path,
        switch_to=(other.username, PASSWORD),
    )

    upload = Upload.objects.get(pk=result.upload_id)
    assert upload.owner == user
    assert upload.key == result.key
    assert upload.key.startswith(f"users/{user.public_id}/")
    assert upload.size == len(demo_png()) == result.size
    assert (upload.content_type, upload.image_width, upload.image_height) == ("image/png", 64, 48)
    assert upload.image_format == "png"
    assert upload.metadata == {"source": "make-demo"}
    assert result.downloaded == result.uploaded == demo_png()
    assert (result.parts_sent, result.confirmed) == (1, False)
    assert UploadTicket.objects.get(key=upload.key).status == "used"
    # The switch: the second user's upload lands under their own prefix.
    switched = Upload.objects.get(key=result.switched_key)
    assert switched.owner == other
    assert switched.key.startswith(f"users/{other.public_id}/")
    # Each step is announced, and no secret is printed whole.
    assert _steps(lines) == ["1.", "2.", "3.", "4.", "5.", "6.", "7.", "8."]
    printed = "\n".join(lines)
    assert PASSWORD not in printed
    assert "the secret and the " in printed


@pytest.mark.django_db(transaction=True)
def test_demo_reports_a_wrong_password(live_callbacks, tmp_path):
    user = UserFactory()
    with pytest.raises(DemoError, match=r"^log in: HTTP 401 invalid_credentials"):
        run_demo(
            base_url=live_callbacks,
            username=user.username,
            password="wrong",
            say=lambda _: None,
            state_dir=tmp_path,
        )


@pytest.mark.django_db(transaction=True)
def test_multipart_upload_takes_its_content_type_from_the_ticket(live_callbacks, tmp_path):
    # A name whose extension says nothing (an SDK would guess application/octet-stream); the
    # object still goes up as the ticket's image/png, so the server accepts it.
    user = UserFactory()
    data = demo_png(220, 220, noise=True)
    assert len(data) > 1.2 * app.MIN_PART_SIZE

    result = run_demo(
        base_url=live_callbacks,
        username=user.username,
        password=PASSWORD,
        say=lambda _: None,
        data=data,
        filename="IMG_0001.bin",
        state_dir=tmp_path,
    )

    upload = Upload.objects.get(pk=result.upload_id)
    assert (upload.size, upload.content_type, upload.image_width) == (len(data), "image/png", 220)
    assert (result.parts_sent, result.confirmed) == (2, False)
    assert result.downloaded == data
    assert app.PendingUploads(tmp_path / user.username).all() == []
    assert list((tmp_path / user.username).iterdir()) == []


@pytest.mark.django_db(transaction=True)
def test_an_upload_killed_midway_resumes_without_sending_its_parts_again(
    live_callbacks, alibaba, tmp_path
):
    user = UserFactory()
    data = demo_png(300, 300, noise=True)  # three 100 KiB parts
    source = tmp_path / "photo.png"
    source.write_bytes(data)
    state = tmp_path / "state"

    killed = subprocess.run(  # our own script, run as `make demo` runs it
        [
            sys.executable,
            "scripts/demo_client.py",
            f"--base-url={live_callbacks}",
            f"--username={user.username}",
            f"--password={PASSWORD}",
            f"--file={source}",
            f"--state-dir={state}",
            "--kill-after-parts=1",
            "--no-switch",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert killed.returncode == -9, killed.stdout + killed.stderr
    (record,) = app.PendingUploads(state / user.username).all()
    assert record["upload_id"] and record["ticket"]["key"].startswith(f"users/{user.public_id}/")
    assert not Upload.objects.exists()

    lines: list[str] = []
    result = run_demo(
        base_url=live_callbacks,
        username=user.username,
        password=PASSWORD,
        say=lines.append,
        state_dir=state,
    )

    (resumed,) = result.resumed
    assert resumed.answer["ok"] is True
    assert resumed.parts_sent == 2  # the part sent before the kill is not sent again
    first = Upload.objects.get(key=record["ticket"]["key"])
    assert (first.size, first.content_type) == (len(data), "image/png")
    assert UploadTicket.objects.get(key=first.key).status == "used"
    detail = requests.get(
        f"{live_callbacks}/api/uploads/{first.id}/",
        headers={"Authorization": f"Bearer {AccessToken.for_user(user)}"},
        timeout=15,
    ).json()
    assert requests.get(detail["download_url"], timeout=15).content == data
    assert any(line.startswith("   resumed #") for line in lines)
    assert list((state / user.username).iterdir()) == []


class _Interrupted(Exception):
    pass


def _interrupt_after_first_part(_number: int) -> None:
    raise _Interrupted


@pytest.mark.django_db(transaction=True)
def test_a_stale_upload_is_aborted_at_start_up(live_callbacks, alibaba, tmp_path):
    user = UserFactory()
    session = _session(live_callbacks, user)
    provider = app.AppCredentialsProvider(session)
    store = app.PendingUploads(tmp_path)
    data = demo_png(220, 220, noise=True)
    (tmp_path / "clip.data").write_bytes(data)
    ticket = _take_ticket(session, data)
    bucket = app.bucket_for(provider, ticket)
    record = app.upload_start(store, ticket=ticket, path=tmp_path / "clip.data")
    with pytest.raises(_Interrupted):
        app.upload_continue(session, bucket, store, record, after_part=_interrupt_after_first_part)
    (record,) = store.all()
    parts = bucket.list_parts(ticket["key"], record["upload_id"]).parts
    assert [part.part_number for part in parts] == [1]

    later = datetime.fromisoformat(ticket["expires_at"]) + timedelta(seconds=1)
    finished, aborted = app.uploads_resume(session, provider, store, now=later)

    assert (finished, [r["ticket"]["id"] for r in aborted]) == ([], [ticket["id"]])
    with pytest.raises(oss2.exceptions.NoSuchUpload):
        bucket.list_parts(ticket["key"], record["upload_id"])
    assert store.all() == []
    assert not Upload.objects.exists()
    session.close()


@pytest.mark.django_db(transaction=True)
def test_parallel_401s_refresh_the_session_once(live_callbacks, user):
    # Refresh tokens rotate and each is good once: eight calls that meet an expired access
    # token at the same time must spend the refresh token once, not eight times.
    pair = _login_pair(live_callbacks, user)
    session = app.AppSession(
        base_url=live_callbacks, access=_expired_access(user), refresh=pair["refresh"]
    )
    start = threading.Barrier(8)
    statuses: list[int] = []

    def call() -> None:
        start.wait()
        statuses.append(session.request("GET", "/api/uploads/").status_code)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert statuses == [200] * 8
    assert session.refreshes == 1
    # The rotated pair is the session's now and still refreshes (a second refresh with the old
    # token would have been refused, and taken for a stolen token).
    rotated = session.refresh_token
    assert rotated != pair["refresh"]
    session.refresh(failed_access=session.access_token)
    assert session.refreshes == 2
    assert session.request("GET", "/api/uploads/").status_code == 200
    again = requests.post(
        f"{live_callbacks}/api/auth/refresh/", json={"refresh": pair["refresh"]}, timeout=15
    )
    assert (again.status_code, again.json()["error"]["code"]) == (401, "token_not_valid")
    session.close()


@pytest.mark.django_db(transaction=True)
def test_the_provider_reports_a_suspension_and_an_expired_session(live_callbacks, user, other_user):
    session = _session(live_callbacks, user)
    provider = app.AppCredentialsProvider(session)
    assert provider.answer()["Prefix"] == f"users/{user.public_id}/"
    provider.forget()
    user_suspend(user=user, reason="test")

    with pytest.raises(app.ApiError) as suspended:
        provider.get_credentials()
    assert (suspended.value.status, suspended.value.code) == (403, "account_suspended")

    # A refresh token already spent (by another device of the same user, say): log in again.
    spent = _login_pair(live_callbacks, other_user)["refresh"]
    requests.post(f"{live_callbacks}/api/auth/refresh/", json={"refresh": spent}, timeout=15)
    stale = app.AppSession(
        base_url=live_callbacks, access=_expired_access(other_user), refresh=spent
    )
    with pytest.raises(app.SessionExpired) as expired:
        app.AppCredentialsProvider(stale).get_credentials()
    assert (expired.value.status, expired.value.code) == (401, "token_not_valid")

    stale.close()
    session.close()

    # Logging out (to switch users) spends the refresh token on the server too.
    leaving = _session(live_callbacks, other_user)
    kept = leaving.refresh_token
    leaving.logout()
    with pytest.raises(app.SessionExpired, match="logged_out"):
        leaving.api("GET", "/api/uploads/")
    after = requests.post(f"{live_callbacks}/api/auth/refresh/", json={"refresh": kept}, timeout=15)
    assert after.status_code == 401


def test_a_pending_upload_record_survives_only_whole(tmp_path):
    store = app.PendingUploads(tmp_path)
    record = {"ticket": {"id": "t1"}, "file": "/x", "size": 1, "part_size": 1, "upload_id": None}
    store.save(record)
    store.save({**record, "upload_id": "u1"})
    assert [p.name for p in tmp_path.iterdir()] == ["t1.json"]
    assert json.loads((tmp_path / "t1.json").read_text())["upload_id"] == "u1"


@pytest.fixture
def lost_callbacks(alibaba, live_server, settings) -> str:
    """OSS stores the object but cannot reach the server: every upload answers 203."""
    settings.OSS_CALLBACK_URL = "http://127.0.0.1:9/api/oss/callback/"  # discard: refused
    return live_server.url


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("multipart", [False, True])
def test_203_is_settled_by_the_confirm_endpoint_without_uploading_again(
    lost_callbacks, tmp_path, multipart
):
    user = UserFactory()
    data = demo_png(220, 220, noise=True) if multipart else demo_png()

    result = run_demo(
        base_url=lost_callbacks,
        username=user.username,
        password=PASSWORD,
        say=lambda _: None,
        data=data,
        state_dir=tmp_path,
    )

    assert result.confirmed is True
    assert result.parts_sent == (2 if multipart else 1)  # each byte sent once
    upload = Upload.objects.get(pk=result.upload_id)
    assert (upload.owner, upload.size, upload.content_type) == (user, len(data), "image/png")
    (ticket,) = UploadTicket.objects.filter(owner=user)
    assert (ticket.key, ticket.status) == (upload.key, "used")
    assert result.downloaded == data
    assert app.PendingUploads(tmp_path / user.username).all() == []


@pytest.mark.django_db(transaction=True)
def test_an_upload_completed_before_the_process_died_is_confirmed_not_sent_again(
    lost_callbacks, tmp_path
):
    # The process completed the multipart upload, OSS answered 203 (or the answer was lost)
    # and the app died before reading it: at start-up, the saved ticket is confirmed.
    user = UserFactory()
    session = _session(lost_callbacks, user)
    provider = app.AppCredentialsProvider(session)
    store = app.PendingUploads(tmp_path)
    data = demo_png(220, 220, noise=True)
    (tmp_path / "clip.data").write_bytes(data)
    ticket = _take_ticket(session, data)
    bucket = app.bucket_for(provider, ticket)
    record = app.upload_start(store, ticket=ticket, path=tmp_path / "clip.data")
    record["upload_id"] = bucket.init_multipart_upload(
        ticket["key"], headers=app.initiate_headers(ticket)
    ).upload_id
    store.save(record)
    size = record["part_size"]
    parts = [
        oss2.models.PartInfo(
            n, bucket.upload_part(ticket["key"], record["upload_id"], n, chunk).etag
        )
        for n, chunk in ((1, data[:size]), (2, data[size:]))
    ]
    completed = bucket.complete_multipart_upload(
        ticket["key"], record["upload_id"], parts, headers=ticket["headers"]
    )
    assert completed.status == 203
    assert not Upload.objects.exists()

    finished, aborted = app.uploads_resume(session, provider, store)

    (outcome,) = finished
    assert (outcome.parts_sent, outcome.confirmed, aborted) == (0, True, [])
    assert outcome.answer["ok"] is True
    upload = Upload.objects.get(key=ticket["key"])
    assert (upload.size, upload.content_type) == (len(data), "image/png")
    assert store.all() == []
    session.close()


@pytest.mark.django_db(transaction=True)
def test_sending_a_stored_upload_again_is_refused_by_oss_and_confirmed(live_callbacks):
    # The app sent the file, lost the answer and sends it again: the ticket's forbid-overwrite
    # header makes OSS refuse (409 FileAlreadyExists) and the client asks the server instead.
    user = UserFactory()
    session = _session(live_callbacks, user)
    provider = app.AppCredentialsProvider(session)
    data = demo_png()
    ticket = _take_ticket(session, data)
    bucket = app.bucket_for(provider, ticket)
    first = app.put_small(session, bucket, ticket=ticket, data=data)

    again = app.put_small(session, bucket, ticket=ticket, data=data)

    assert (first.confirmed, again.confirmed) == (False, True)
    assert again.answer["ok"] is True
    assert again.answer["upload"]["id"] == first.answer["upload"]["id"]
    assert Upload.objects.filter(owner=user).count() == 1
    session.close()
