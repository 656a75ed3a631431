"""End-user authentication over real HTTP against the live server."""

from __future__ import annotations

import pytest
import requests

pytestmark = pytest.mark.django_db(transaction=True)


def _login(base: str, username: str, password: str) -> requests.Response:
    return requests.post(
        f"{base}/api/auth/login/", json={"username": username, "password": password}, timeout=10
    )


def test_login_me_refresh_logout(live_server, user, password):
    response = _login(live_server.url, user.username, password)
    assert response.status_code == 200
    pair = response.json()
    assert set(pair) == {"access", "refresh"}

    me = requests.get(
        f"{live_server.url}/api/auth/me/",
        headers={"Authorization": f"Bearer {pair['access']}"},
        timeout=10,
    )
    assert me.status_code == 200
    assert me.json()["username"] == user.username
    assert me.json()["public_id"] == user.public_id
    assert me.json()["storage_prefix"] == f"users/{user.public_id}/"

    refreshed = requests.post(
        f"{live_server.url}/api/auth/refresh/", json={"refresh": pair["refresh"]}, timeout=10
    )
    assert refreshed.status_code == 200
    new_pair = refreshed.json()
    assert new_pair["refresh"] != pair["refresh"]

    # Reusing the old refresh token ends the session: tests/accounts/test_sessions.py.
    out = requests.post(
        f"{live_server.url}/api/auth/logout/", json={"refresh": new_pair["refresh"]}, timeout=10
    )
    assert out.status_code == 204
    after = requests.post(
        f"{live_server.url}/api/auth/refresh/", json={"refresh": new_pair["refresh"]}, timeout=10
    )
    assert after.status_code == 401


def test_wrong_password_is_401_in_the_error_shape(live_server, user):
    response = _login(live_server.url, user.username, "wrong-password")
    assert response.status_code == 401
    assert response.json() == {
        "error": {"code": "invalid_credentials", "message": "Wrong username or password."}
    }


def test_me_requires_a_token(live_server):
    response = requests.get(f"{live_server.url}/api/auth/me/", timeout=10)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_register_then_login(live_server, password):
    response = requests.post(
        f"{live_server.url}/api/auth/register/",
        json={"username": "newcomer", "password": password},
        timeout=10,
    )
    assert response.status_code == 201
    assert response.json()["user"]["username"] == "newcomer"
    assert _login(live_server.url, "newcomer", password).status_code == 200
    again = requests.post(
        f"{live_server.url}/api/auth/register/",
        json={"username": "newcomer", "password": password},
        timeout=10,
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "username_taken"


def test_register_disabled(live_server, settings, password):
    settings.REGISTRATION_ENABLED = False
    response = requests.post(
        f"{live_server.url}/api/auth/register/",
        json={"username": "newcomer", "password": password},
        timeout=10,
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "registration_disabled"


def test_unknown_path_is_json_404(live_server):
    response = requests.get(f"{live_server.url}/api/nothing-here/", timeout=10)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_healthz(live_server):
    response = requests.get(f"{live_server.url}/healthz", timeout=10)
    assert response.status_code == 200
    assert response.json()["checks"]["database"]["ok"] is True
    assert response.json()["checks"]["cache"]["ok"] is True
