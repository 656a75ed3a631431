"""Login sessions: each refresh token works once, reuse ends the session, and users see and
end their sessions. Over real HTTP against the live server and PostgreSQL."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from accounts.models import LoginSession
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _login(base: str, user, password: str, agent: str = "tests") -> dict[str, str]:
    response = requests.post(
        f"{base}/api/auth/login/",
        json={"username": user.username, "password": password},
        headers={"User-Agent": agent},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def _refresh(base: str, refresh: str) -> requests.Response:
    return requests.post(f"{base}/api/auth/refresh/", json={"refresh": refresh}, timeout=30)


def _sessions(base: str, access: str) -> requests.Response:
    return requests.get(
        f"{base}/api/auth/sessions/", headers={"Authorization": f"Bearer {access}"}, timeout=10
    )


def _assert_token_not_valid(response: requests.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "token_not_valid"


def test_ten_concurrent_refreshes_with_one_token_exactly_one_wins(live_server, user, password):
    pair = _login(live_server.url, user, password)
    start = threading.Barrier(10)

    def refresh_once(_: int) -> requests.Response:
        start.wait(timeout=30)
        return _refresh(live_server.url, pair["refresh"])

    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(refresh_once, range(10)))

    assert sorted(r.status_code for r in responses) == [200] + [401] * 9
    for response in responses:
        if response.status_code == 401:
            assert response.json()["error"]["code"] == "token_not_valid"
    # Nine requests presented a used token: that is reuse, so the session is over and the one
    # token that was handed out is dead too (whoever raced cannot keep a fork of the session).
    (winner,) = [r.json() for r in responses if r.status_code == 200]
    _assert_token_not_valid(_refresh(live_server.url, winner["refresh"]))
    session = LoginSession.objects.get(user=user)
    assert session.end_reason == LoginSession.EndReason.REUSE


def test_reusing_a_rotated_token_ends_the_whole_family(live_server, user, password):
    first = _login(live_server.url, user, password)
    second = _refresh(live_server.url, first["refresh"]).json()
    third = _refresh(live_server.url, second["refresh"]).json()
    other_device = _login(live_server.url, user, password)

    # The stolen first token comes back: it is refused and the family it started ends.
    _assert_token_not_valid(_refresh(live_server.url, first["refresh"]))
    _assert_token_not_valid(_refresh(live_server.url, third["refresh"]))
    _assert_token_not_valid(
        requests.post(
            f"{live_server.url}/api/auth/logout/", json={"refresh": third["refresh"]}, timeout=10
        )
    )
    # Another login of the same user is another family and is untouched.
    assert _refresh(live_server.url, other_device["refresh"]).status_code == 200


def test_a_user_lists_and_revokes_their_sessions(live_server, user, other_user, password):
    phone = _login(live_server.url, user, password, agent="phone/1.0")
    tablet = _login(live_server.url, user, password, agent="tablet/2.0")
    laptop = _login(live_server.url, user, password, agent="laptop/3.0")
    _login(live_server.url, other_user, password, agent="someone-else")

    listed = _sessions(live_server.url, phone["access"])
    assert listed.status_code == 200
    sessions = listed.json()
    assert [s["user_agent"] for s in sessions] == ["laptop/3.0", "tablet/2.0", "phone/1.0"]
    assert [s["current"] for s in sessions] == [False, False, True]
    assert {s["ip_address"] for s in sessions} == {"127.0.0.1"}
    assert set(sessions[0]) == {
        "id",
        "created_at",
        "last_used_at",
        "expires_at",
        "user_agent",
        "ip_address",
        "current",
    }

    tablet_id = sessions[1]["id"]
    # Another user cannot end it (the same 404 as an unknown id).
    stranger = _login(live_server.url, other_user, password)
    response = requests.delete(
        f"{live_server.url}/api/auth/sessions/{tablet_id}/",
        headers={"Authorization": f"Bearer {stranger['access']}"},
        timeout=10,
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "session_not_found"

    response = requests.delete(
        f"{live_server.url}/api/auth/sessions/{tablet_id}/",
        headers={"Authorization": f"Bearer {phone['access']}"},
        timeout=10,
    )
    assert response.status_code == 204
    _assert_token_not_valid(_refresh(live_server.url, tablet["refresh"]))
    assert [s["user_agent"] for s in _sessions(live_server.url, phone["access"]).json()] == [
        "laptop/3.0",
        "phone/1.0",
    ]

    # "Log out everywhere else": the caller's own session stays.
    response = requests.delete(
        f"{live_server.url}/api/auth/sessions/",
        headers={"Authorization": f"Bearer {phone['access']}"},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.json() == {"revoked": 1}
    _assert_token_not_valid(_refresh(live_server.url, laptop["refresh"]))
    assert _refresh(live_server.url, phone["refresh"]).status_code == 200
    assert len(_sessions(live_server.url, stranger["access"]).json()) == 2


def test_session_list_needs_a_token(live_server):
    response = requests.get(f"{live_server.url}/api/auth/sessions/", timeout=10)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def _deleted(user) -> None:
    user.delete()


def _deactivated(user) -> None:
    user.is_active = False
    user.save(update_fields=["is_active"])


def _suspended(user) -> None:
    from accounts.services import user_suspend

    user_suspend(user=user, reason="test")


@pytest.mark.parametrize("disable", [_deleted, _deactivated, _suspended])
def test_tokens_of_a_disabled_user_are_not_valid_on_every_auth_endpoint(
    live_server, password, disable
):
    user = UserFactory()
    pair = _login(live_server.url, user, password)
    disable(user)
    bearer = {"Authorization": f"Bearer {pair['access']}"}
    base = f"{live_server.url}/api/auth"
    responses = [
        requests.post(f"{base}/refresh/", json={"refresh": pair["refresh"]}, timeout=10),
        requests.post(f"{base}/logout/", json={"refresh": pair["refresh"]}, timeout=10),
        requests.get(f"{base}/me/", headers=bearer, timeout=10),
        requests.get(f"{base}/sessions/", headers=bearer, timeout=10),
        requests.delete(f"{base}/sessions/", headers=bearer, timeout=10),
    ]
    for response in responses:
        _assert_token_not_valid(response)


def test_forged_or_foreign_refresh_tokens_are_not_valid(live_server, user):
    from rest_framework_simplejwt.tokens import RefreshToken

    # Signed by the server but not part of any session (e.g. issued before sessions existed).
    no_session = str(RefreshToken.for_user(user))
    garbage_sid = RefreshToken.for_user(user)
    garbage_sid["sid"] = "not-a-uuid"
    access_as_refresh = _login(live_server.url, user, PASSWORD)["access"]
    for token in (no_session, str(garbage_sid), "not-a-jwt", access_as_refresh):
        _assert_token_not_valid(_refresh(live_server.url, token))


@pytest.mark.parametrize("logins", [1, 3])
def test_session_list_queries_do_not_grow_with_sessions(
    api_client, user, password, logins, django_assert_num_queries
):
    for _ in range(logins):
        pair = api_client.post(
            "/api/auth/login/", {"username": user.username, "password": password}, format="json"
        ).json()
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair['access']}")
    with django_assert_num_queries(2):  # the token's user, the sessions
        response = api_client.get("/api/auth/sessions/")
    assert response.status_code == 200
    assert len(response.json()) == logins
