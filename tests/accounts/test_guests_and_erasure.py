"""Guests, upgrades that keep uploads, erasure and export, end to end: the app under live_server,
the emulator as STS + OSS, oss2 as the app, a local OpenID provider over HTTP."""

from __future__ import annotations

import socket
from datetime import timedelta
from urllib.parse import urlsplit

import oss2
import pytest
import requests
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from accounts.models import AccountErasure, ExternalIdentity, LoginSession, User
from reports.reconciliation import reconciliation_run
from tests.accounts.oidc_provider import OidcProvider
from tests.factories import PASSWORD, UserFactory
from tests.uploads.conftest import TIMEOUT, Live
from tokens.models import CredentialGrant
from uploads.models import CallbackRefusal, StorageUsage, Upload, UploadTicket

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def stack(alibaba, live_server, settings) -> Live:
    settings.OSS_CALLBACK_URL = live_server.url + "/api/oss/callback/"
    assert urlsplit(live_server.url).hostname in settings.ALLOWED_HOSTS
    settings.GUEST_ENABLED = True
    return Live(url=live_server.url, emulator=alibaba, settings=settings)


@pytest.fixture
def idp(settings):
    provider = OidcProvider()
    settings.OIDC_PROVIDERS = [
        {"name": "local", "issuer": provider.issuer, "audiences": ["app-client"]}
    ]
    yield provider
    provider.close()


def upload(stack: Live, user, data: bytes, *, filename: str = "notes.txt") -> str:
    ticket = stack.ticket(user, filename=filename, size=len(data), content_type="text/plain")
    result = stack.bucket(user).put_object(
        ticket["key"], data, headers={**ticket["headers"], "Content-Type": "text/plain"}
    )
    assert result.status == 200
    return ticket["key"]


def emulator_bucket(stack: Live) -> oss2.Bucket:
    """The bucket as the emulator holds it (tests point the app's endpoint elsewhere)."""
    auth = oss2.make_auth(
        stack.settings.ALIBABA_ACCESS_KEY_ID, stack.settings.ALIBABA_ACCESS_KEY_SECRET, "v4"
    )
    return oss2.Bucket(
        auth,
        stack.emulator.endpoint,
        stack.settings.OSS_BUCKET,
        region=stack.settings.OSS_REGION,
        connect_timeout=TIMEOUT,
    )


def keys_under(stack: Live, prefix: str) -> list[str]:
    listing = emulator_bucket(stack).list_objects(prefix=prefix, max_keys=1000)
    return [o.key for o in listing.object_list]


def new_guest(stack: Live) -> tuple[User, dict]:
    response = requests.post(stack.url + "/api/auth/guest/", timeout=TIMEOUT)
    assert response.status_code == 201, response.text
    body = response.json()
    return User.objects.get(public_id=body["user"]["public_id"]), body


def with_token(access: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access}"}


# --- Guests -------------------------------------------------------------------------------------


def test_guests_are_off_unless_enabled(stack, settings):
    settings.GUEST_ENABLED = False
    response = requests.post(stack.url + "/api/auth/guest/", timeout=TIMEOUT)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "guests_disabled"
    assert User.objects.count() == 0


def test_a_guest_has_its_own_prefix_and_small_quotas(stack, settings):
    settings.GUEST_QUOTA_BYTES, settings.GUEST_QUOTA_OBJECTS = 1000, 2
    guest, body = new_guest(stack)
    other, _ = new_guest(stack)
    assert guest.is_guest and not guest.has_usable_password()
    assert body["user"]["is_guest"] is True
    assert body["user"]["storage_prefix"] == f"users/{guest.public_id}/"
    assert guest.public_id != other.public_id
    usage = StorageUsage.objects.get(user=guest)
    assert (usage.max_bytes, usage.max_objects) == (1000, 2)

    too_big = stack.api(
        "POST",
        "/api/uploads/tickets/",
        guest,
        json={"filename": "a.txt", "size": 1001, "content_type": "text/plain"},
    )
    assert too_big.status_code == 403
    assert too_big.json()["error"]["code"] == "quota_exceeded"
    upload(stack, guest, b"one")
    upload(stack, guest, b"two")
    third = stack.api(
        "POST",
        "/api/uploads/tickets/",
        guest,
        json={"filename": "c.txt", "size": 3, "content_type": "text/plain"},
    )
    assert third.status_code == 403


def test_guests_are_rate_limited_per_address(stack, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "guest": "2/hour",
        },
    }
    codes = [
        requests.post(stack.url + "/api/auth/guest/", timeout=TIMEOUT).status_code for _ in range(3)
    ]
    assert codes == [201, 201, 429]
    assert User.objects.count() == 2


def test_guest_upgrades_with_a_password_and_keeps_its_uploads(stack, settings):
    settings.GUEST_QUOTA_OBJECTS = 1
    guest, body = new_guest(stack)
    key = upload(stack, guest, b"kept")
    response = requests.post(
        stack.url + "/api/auth/guest/upgrade/",
        json={"username": "kept-user", "password": PASSWORD, "email": "k@example.com"},
        headers=with_token(body["access"]),
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    assert response.json()["public_id"] == guest.public_id
    guest.refresh_from_db()
    assert (guest.username, guest.is_guest) == ("kept-user", False)
    usage = StorageUsage.objects.get(user=guest)
    assert (usage.max_bytes, usage.max_objects, usage.objects_used) == (None, None, 1)
    assert list(Upload.objects.filter(owner=guest).values_list("key", flat=True)) == [key]
    assert keys_under(stack, f"users/{guest.public_id}/") == [key]
    # Ordinary quotas now: a second upload is allowed.
    upload(stack, guest, b"second")
    login = requests.post(
        stack.url + "/api/auth/login/",
        json={"username": "kept-user", "password": PASSWORD},
        timeout=TIMEOUT,
    )
    assert login.status_code == 200
    # An upgraded account is no guest: a second upgrade is refused.
    again = requests.post(
        stack.url + "/api/auth/guest/upgrade/",
        json={"username": "other-name", "password": PASSWORD},
        headers=with_token(login.json()["access"]),
        timeout=TIMEOUT,
    )
    assert again.status_code == 409


def test_guest_upgrade_refuses_a_taken_username(stack):
    UserFactory(username="taken")
    guest, body = new_guest(stack)
    response = requests.post(
        stack.url + "/api/auth/guest/upgrade/",
        json={"username": "taken", "password": PASSWORD},
        headers=with_token(body["access"]),
        timeout=TIMEOUT,
    )
    assert response.status_code == 409
    guest.refresh_from_db()
    assert guest.is_guest and guest.username.startswith("guest-")


def test_guest_upgrades_by_linking_a_provider_and_keeps_its_uploads(stack, idp):
    guest, body = new_guest(stack)
    key = upload(stack, guest, b"kept")
    response = requests.post(
        stack.url + "/api/auth/oidc/link/",
        json={"provider": "local", "id_token": idp.token(sub="g-42")},
        headers=with_token(body["access"]),
        timeout=TIMEOUT,
    )
    assert response.status_code == 201, response.text
    guest.refresh_from_db()
    assert not guest.is_guest
    signed_in = requests.post(
        stack.url + "/api/auth/oidc/",
        json={"provider": "local", "id_token": idp.token(sub="g-42")},
        timeout=TIMEOUT,
    ).json()
    assert signed_in["user"]["public_id"] == guest.public_id
    listing = requests.get(
        stack.url + "/api/uploads/", headers=with_token(signed_in["access"]), timeout=TIMEOUT
    ).json()
    assert [item["key"] for item in listing["results"]] == [key]


@pytest.mark.parametrize("command", ["sweep_uploads", "expire_guests"])
def test_expired_guests_are_erased_with_their_objects(stack, settings, command):
    settings.GUEST_TTL_DAYS = 7
    stale, _ = new_guest(stack)
    fresh, _ = new_guest(stack)
    upgraded, _ = new_guest(stack)
    for user in (stale, fresh, upgraded):
        upload(stack, user, b"guest data")
    User.objects.filter(pk__in=[stale.pk, upgraded.pk]).update(
        date_joined=timezone.now() - timedelta(days=8)
    )
    User.objects.filter(pk=upgraded.pk).update(is_guest=False)

    call_command(command)

    assert set(User.objects.values_list("pk", flat=True)) == {fresh.pk, upgraded.pk}
    assert keys_under(stack, f"users/{stale.public_id}/") == []
    assert len(keys_under(stack, f"users/{fresh.public_id}/")) == 1
    receipt = AccountErasure.objects.get()
    assert (receipt.public_id, receipt.reason, receipt.state) == (
        stale.public_id,
        "guest_expired",
        "done",
    )
    assert (receipt.objects_deleted, receipt.uploads_deleted) == (1, 1)


# --- Erasure ------------------------------------------------------------------------------------


def login(stack: Live, user) -> dict:
    response = requests.post(
        stack.url + "/api/auth/login/",
        json={"username": user.username, "password": PASSWORD},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200
    return response.json()


def erase(stack: Live, access: str, **body) -> requests.Response:
    return requests.delete(
        stack.url + "/api/auth/me/", json=body, headers=with_token(access), timeout=TIMEOUT
    )


def test_erasure_leaves_nothing_in_the_bucket_or_the_database(stack, idp):
    user, bystander = UserFactory(), UserFactory()
    keys = [upload(stack, user, f"file {n}".encode(), filename=f"f{n}.txt") for n in range(3)]
    kept = upload(stack, bystander, b"not mine")
    stack.api(  # an unused ticket, holding a reservation
        "POST",
        "/api/uploads/tickets/",
        user,
        json={"filename": "x.txt", "size": 5, "content_type": "text/plain"},
    )
    # A multipart upload left unfinished: its parts are in the bucket, not in ListObjects.
    pending = stack.ticket(user, filename="clip.mp4", size=200, content_type="video/mp4")
    no_overwrite = {"x-oss-forbid-overwrite": "true", "Content-Type": "video/mp4"}
    user_bucket = stack.bucket(user)
    upload_id = user_bucket.init_multipart_upload(pending["key"], headers=no_overwrite).upload_id
    user_bucket.upload_part(pending["key"], upload_id, 1, b"p" * 200, headers=no_overwrite)
    tokens = login(stack, user)
    assert (
        requests.post(
            stack.url + "/api/auth/oidc/link/",
            json={"provider": "local", "id_token": idp.token(sub="leaving")},
            headers=with_token(tokens["access"]),
            timeout=TIMEOUT,
        ).status_code
        == 201
    )
    prefix = f"users/{user.public_id}/"
    assert sorted(keys_under(stack, prefix)) == sorted(keys)

    response = erase(stack, tokens["access"], password=PASSWORD)
    assert response.status_code == 200, response.text
    receipt = response.json()
    assert receipt["public_id"] == user.public_id
    assert (receipt["state"], receipt["objects_deleted"], receipt["uploads_deleted"]) == (
        "done",
        3,
        3,
    )

    assert keys_under(stack, prefix) == []
    assert list(oss2.MultipartUploadIterator(emulator_bucket(stack), prefix=prefix)) == []
    assert keys_under(stack, f"users/{bystander.public_id}/") == [kept]
    assert not User.objects.filter(pk=user.pk).exists()
    for model, field in (
        (Upload, "owner_id"),
        (UploadTicket, "owner_id"),
        (StorageUsage, "user_id"),
        (ExternalIdentity, "user_id"),
        (CallbackRefusal, "owner_id"),
        (LoginSession, "user_id"),
    ):
        assert not model.objects.filter(**{field: user.pk}).exists(), model
    assert not CredentialGrant.objects.filter(prefix=prefix).exclude(user_agent="").exists()
    assert Upload.objects.filter(owner=bystander).count() == 1

    # The credentials stopped: the access token, the refresh token, the password.
    assert (
        requests.get(
            stack.url + "/api/auth/me/", headers=with_token(tokens["access"]), timeout=TIMEOUT
        ).status_code
        == 401
    )
    refresh = requests.post(
        stack.url + "/api/auth/refresh/", json={"refresh": tokens["refresh"]}, timeout=TIMEOUT
    )
    assert refresh.status_code == 401
    # The provider identity is free again: it makes a new, empty account.
    again = requests.post(
        stack.url + "/api/auth/oidc/",
        json={"provider": "local", "id_token": idp.token(sub="leaving")},
        timeout=TIMEOUT,
    ).json()
    assert again["created"] is True and again["user"]["public_id"] != user.public_id

    # A reconcile of the prefix afterwards finds nothing.
    run = reconciliation_run(prefix=prefix)
    assert run.findings.count() == 0
    stored = AccountErasure.objects.get(public_id=user.public_id)
    assert stored.user_id is None and stored.finished_at is not None


def test_erasure_needs_the_password_or_a_fresh_sign_in(stack):
    user = UserFactory()
    old = stack.api("DELETE", "/api/auth/me/", user, json={})  # a token with no sign-in time
    assert old.status_code == 403
    assert old.json()["error"]["code"] == "reauthentication_required"
    wrong = stack.api("DELETE", "/api/auth/me/", user, json={"password": "nope"})
    assert wrong.status_code == 403
    assert wrong.json()["error"]["code"] == "wrong_password"
    assert User.objects.filter(pk=user.pk, is_active=True).exists()

    # A refreshed token keeps its sign-in time: too old a sign-in cannot be refreshed fresh.
    stack.settings.ACCOUNT_ERASE_FRESH_SECONDS = 0
    tokens = login(stack, user)
    refreshed = requests.post(
        stack.url + "/api/auth/refresh/", json={"refresh": tokens["refresh"]}, timeout=TIMEOUT
    ).json()
    stale = erase(stack, refreshed["access"])
    assert stale.status_code == 403
    stack.settings.ACCOUNT_ERASE_FRESH_SECONDS = 300
    assert erase(stack, refreshed["access"]).status_code == 200
    assert not User.objects.filter(pk=user.pk).exists()


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_interrupted_erasure_is_continued_by_the_sweep(stack, settings):
    user = UserFactory()
    keys = [upload(stack, user, f"f{n}".encode(), filename=f"f{n}.txt") for n in range(2)]
    tokens = login(stack, user)
    settings.OSS_ENDPOINT = _closed_port()  # OSS unreachable for the server

    response = erase(stack, tokens["access"], password=PASSWORD)
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "deleting_objects"
    # Already locked out, already recorded; the objects wait.
    assert (
        requests.get(
            stack.url + "/api/auth/me/", headers=with_token(tokens["access"]), timeout=TIMEOUT
        ).status_code
        == 401
    )
    assert sorted(keys_under(stack, f"users/{user.public_id}/")) == sorted(keys)

    call_command("expire_guests")  # still down: waits, nothing lost
    assert AccountErasure.objects.get().state == "deleting_objects"
    assert User.objects.filter(pk=user.pk).exists()

    settings.OSS_ENDPOINT = stack.emulator.endpoint
    call_command("expire_guests")
    receipt = AccountErasure.objects.get()
    assert (receipt.state, receipt.objects_deleted, receipt.uploads_deleted) == ("done", 2, 2)
    assert keys_under(stack, f"users/{user.public_id}/") == []
    assert not User.objects.filter(pk=user.pk).exists()


def test_admin_erases_and_staff_read_receipts(stack, admin_client, staff_user):
    user = UserFactory(email="private@example.com")
    upload(stack, user, b"admin erases me")
    response = admin_client.post(
        reverse("admin:accounts_user_changelist"),
        {"action": "erase_users", "_selected_action": [user.pk, staff_user.pk]},
    )
    assert response.status_code == 302
    assert not User.objects.filter(pk=user.pk).exists()
    assert User.objects.filter(pk=staff_user.pk).exists()  # never oneself
    assert keys_under(stack, f"users/{user.public_id}/") == []
    page = admin_client.get(reverse("admin:accounts_accounterasure_changelist"))
    assert page.status_code == 200
    html = page.content.decode()
    assert user.public_id in html
    assert user.username not in html and "private@example.com" not in html


# --- Export -------------------------------------------------------------------------------------


def test_export_has_the_profile_and_uploads_with_working_urls(stack, idp):
    user, other = UserFactory(), UserFactory()
    key = upload(stack, user, b"my bytes", filename="mine.txt")
    upload(stack, other, b"not mine")
    ExternalIdentity.objects.create(user=user, provider="local", subject="s-1")

    response = stack.api("GET", "/api/auth/me/export/", user)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["profile"]["public_id"] == user.public_id
    assert data["profile"]["email"] == user.email
    assert [(i["provider"], i["subject"]) for i in data["identities"]] == [("local", "s-1")]
    assert [u["filename"] for u in data["uploads"]] == ["mine.txt"]
    item = data["uploads"][0]
    assert item["size"] == len(b"my bytes")
    assert key not in str(data["profile"])
    download = requests.get(item["download_url"], timeout=TIMEOUT)
    assert download.status_code == 200 and download.content == b"my bytes"
    assert requests.get(stack.url + "/api/auth/me/export/", timeout=TIMEOUT).status_code == 401
