"""The token epoch (accounts/token_state.py): the hot endpoints trust a token's claims only
while Redis holds its epoch, and every change that must end tokens ends them at once. Real
Redis, PostgreSQL and requests through the whole stack."""

from __future__ import annotations

import socket

import pytest
from django.core.cache import cache
from redis.exceptions import ConnectionError as RedisConnectionError
from rest_framework.test import APIClient, APIRequestFactory

from accounts.authentication import StatelessJWTAuthentication
from accounts.models import User
from accounts.services import user_suspend, user_unsuspend
from accounts.token_state import CHANGING, GONE, HELD, state_key, tokens_revoked

pytestmark = pytest.mark.django_db

USAGE = "/api/uploads/usage/"  # a hot endpoint (stateless authentication), no throttle


def _login(client: APIClient, user, password: str) -> dict[str, str]:
    response = client.post(
        "/api/auth/login/", {"username": user.username, "password": password}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()


def _get(client: APIClient, path: str, access: str):
    return client.get(path, HTTP_AUTHORIZATION=f"Bearer {access}")


def _code(response) -> str:
    return response.json()["error"]["code"]


def test_once_redis_holds_the_epoch_no_user_row_is_read(
    api_client, user, password, django_assert_num_queries
):
    access = _login(api_client, user, password)["access"]
    assert cache.get(state_key(user.pk)) is None
    assert _get(api_client, USAGE, access).status_code == 200  # the database decides, once
    assert cache.get(state_key(user.pk)) == user.token_epoch

    request = APIRequestFactory().get(USAGE, HTTP_AUTHORIZATION=f"Bearer {access}")
    with django_assert_num_queries(0):
        found, _ = StatelessJWTAuthentication().authenticate(request)
    assert (found.pk, found.public_id, found.is_staff, found.is_suspended) == (
        user.pk,
        user.public_id,
        False,
        False,
    )
    assert found.credentials_epoch == user.credentials_epoch
    # Any other field is read from the database, never made up.
    with django_assert_num_queries(1):
        assert found.username == user.username


def test_suspension_is_refused_at_once_by_every_endpoint(
    api_client, user, password, django_capture_on_commit_callbacks
):
    access = _login(api_client, user, password)["access"]
    assert _get(api_client, USAGE, access).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        user_suspend(user=user, reason="abuse")
    assert cache.get(state_key(user.pk)) == HELD

    for path in (USAGE, "/api/sts/credentials/", "/api/uploads/"):
        response = _get(api_client, path, access)
        assert response.status_code == 403, path
    ticket = api_client.post(
        "/api/uploads/tickets/",
        {"filename": "a.txt", "size": 3, "content_type": "text/plain"},
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {access}",
    )
    assert ticket.status_code == 403
    assert _code(ticket) == "account_suspended"
    me = _get(api_client, "/api/auth/me/", access)
    assert (me.status_code, _code(me)) == (401, "token_not_valid")

    # Unsuspended: the old token stays void (its epoch is gone), a new login works statelessly.
    with django_capture_on_commit_callbacks(execute=True):
        user_unsuspend(user=user)
    assert _code(_get(api_client, USAGE, access)) == "token_not_valid"
    fresh = _login(api_client, user, password)["access"]
    assert _get(api_client, USAGE, fresh).status_code == 200
    user.refresh_from_db()
    assert cache.get(state_key(user.pk)) == user.token_epoch


def test_while_a_change_is_being_made_the_database_decides(api_client, user, password):
    access = _login(api_client, user, password)["access"]
    assert _get(api_client, USAGE, access).status_code == 200
    with tokens_revoked(user=user):
        # Redis has the marker before the row changes: no worker trusts the old epoch any more,
        # though the change is not done (nor committed) yet.
        assert cache.get(state_key(user.pk)) == CHANGING
        User.objects.filter(pk=user.pk).update(is_suspended=True)
        response = _get(api_client, USAGE, access)
        assert (response.status_code, _code(response)) == (403, "account_suspended")
        # A request reading the database meanwhile cannot put an epoch back (SET NX).
        assert cache.get(state_key(user.pk)) == CHANGING


def test_a_deleted_users_token_is_not_valid(api_client, user, password):
    access = _login(api_client, user, password)["access"]
    assert _get(api_client, USAGE, access).status_code == 200
    user.delete()
    response = _get(api_client, USAGE, access)
    assert (response.status_code, _code(response)) == (401, "token_not_valid")


def test_deletion_marks_the_user_gone(api_client, user, password):
    pk = user.pk
    access = _login(api_client, user, password)["access"]
    assert _get(api_client, USAGE, access).status_code == 200
    User.objects.filter(pk=pk).delete()
    assert cache.get(state_key(pk)) == GONE
    assert _code(_get(api_client, USAGE, access)) == "token_not_valid"


def test_a_password_change_ends_access_tokens_and_refresh_still_works(
    api_client, user, password, django_capture_on_commit_callbacks
):
    pair = _login(api_client, user, password)
    assert _get(api_client, USAGE, pair["access"]).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        user.set_password("another-long-passphrase-42")
        user.save()
    for path in (USAGE, "/api/auth/me/"):
        response = _get(api_client, path, pair["access"])
        assert (response.status_code, _code(response)) == (401, "token_not_valid"), path
    refreshed = api_client.post("/api/auth/refresh/", {"refresh": pair["refresh"]}, format="json")
    assert refreshed.status_code == 200
    assert _get(api_client, USAGE, refreshed.json()["access"]).status_code == 200


def test_a_staff_flag_change_ends_tokens_that_carry_the_old_one(
    api_client, user, password, django_capture_on_commit_callbacks
):
    access = _login(api_client, user, password)["access"]
    assert _get(api_client, USAGE, access).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        user.is_staff = True
        user.save()
    assert _code(_get(api_client, USAGE, access)) == "token_not_valid"


def test_saving_other_fields_ends_nothing(api_client, user, password):
    access = _login(api_client, user, password)["access"]
    assert _get(api_client, USAGE, access).status_code == 200
    epoch = User.objects.get(pk=user.pk).token_epoch
    user.first_name = "Ada"
    user.save()
    assert User.objects.get(pk=user.pk).token_epoch == epoch
    assert _get(api_client, USAGE, access).status_code == 200


def test_ending_a_session_ends_its_access_tokens_at_once_and_only_its_own(
    api_client, user, password
):
    phone = _login(api_client, user, password)
    tablet = _login(api_client, user, password)
    laptop = _login(api_client, user, password)
    for pair in (phone, tablet, laptop):
        assert _get(api_client, USAGE, pair["access"]).status_code == 200
    sessions = _get(api_client, "/api/auth/sessions/", phone["access"]).json()
    tablet_id = next(s["id"] for s in sessions if not s["current"])
    tablet_access = tablet["access"] if tablet_id in _sid(tablet["access"]) else laptop["access"]
    other_access = laptop["access"] if tablet_access == tablet["access"] else tablet["access"]

    response = api_client.delete(
        f"/api/auth/sessions/{tablet_id}/", HTTP_AUTHORIZATION=f"Bearer {phone['access']}"
    )
    assert response.status_code == 204
    for path in (USAGE, "/api/auth/me/"):
        assert _code(_get(api_client, path, tablet_access)) == "token_not_valid", path
    assert _get(api_client, USAGE, phone["access"]).status_code == 200
    assert _get(api_client, USAGE, other_access).status_code == 200

    # Logging out ends that session's access token too.
    logout = api_client.post("/api/auth/logout/", {"refresh": phone["refresh"]}, format="json")
    assert logout.status_code == 204
    assert _code(_get(api_client, USAGE, phone["access"])) == "token_not_valid"
    assert _get(api_client, USAGE, other_access).status_code == 200


def _sid(access: str) -> str:
    from rest_framework_simplejwt.tokens import AccessToken

    return str(AccessToken(access)["sid"])


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_with_redis_unreachable_the_database_decides(api_client, user, password, settings):
    access = _login(api_client, user, password)["access"]
    assert _get(api_client, USAGE, access).status_code == 200
    suspended = User.objects.create_user("suspended-one", password=password)
    suspended_access = _login(api_client, suspended, password)["access"]
    User.objects.filter(pk=suspended.pk).update(is_suspended=True)

    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": f"redis://127.0.0.1:{_closed_port()}/0",
        }
    }
    assert _get(api_client, USAGE, access).status_code == 200
    response = _get(api_client, USAGE, suspended_access)
    assert (response.status_code, _code(response)) == (403, "account_suspended")
    # A change Redis cannot be told about is not made: no worker could trust the old epoch.
    with pytest.raises(RedisConnectionError):
        user_suspend(user=user, reason="abuse")
    assert not User.objects.get(pk=user.pk).is_suspended


def test_me_renders_what_the_serializer_renders(api_client, user, password):
    from accounts.serializers import UserOutputSerializer

    access = _login(api_client, user, password)["access"]
    response = _get(api_client, "/api/auth/me/", access)
    assert response.status_code == 200
    user.refresh_from_db()
    assert response.json() == UserOutputSerializer(user).data
    assert response.json()["date_joined"].endswith("Z")
