"""Suspension as an admin action: immediate, and it drops the user's cached credentials."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from policies.services import ALL_SCOPES
from tokens.services import credentials_cache_key, credentials_issue

pytestmark = pytest.mark.django_db


def _changelist_action(client: Client, action: str, *users) -> None:
    response = client.post(
        reverse("admin:accounts_user_changelist"),
        {"action": action, "_selected_action": [u.pk for u in users]},
    )
    assert response.status_code == 302


def test_admin_suspend_and_unsuspend_actions(admin_client, staff_user, user, other_user, alibaba):
    for scope in ("read", "readwrite"):
        credentials_issue(user=user, scope=scope, client_ip="127.0.0.1", user_agent="test")
    credentials_issue(user=other_user, scope="read", client_ip=None, user_agent="")
    assert cache.get(credentials_cache_key(user=user, scope="readwrite")) is not None

    _changelist_action(admin_client, "suspend_users", user)
    user.refresh_from_db()
    assert user.is_suspended
    assert user.suspended_at is not None
    assert user.suspension_reason == f"suspended by {staff_user.username}"
    for scope in ALL_SCOPES:
        assert cache.get(credentials_cache_key(user=user, scope=scope)) is None
    # Nobody else's credentials were touched.
    assert cache.get(credentials_cache_key(user=other_user, scope="read")) is not None

    _changelist_action(admin_client, "unsuspend_users", user)
    user.refresh_from_db()
    assert not user.is_suspended
    assert user.suspended_at is None
    assert user.suspension_reason == ""


def test_suspended_user_gets_no_credentials_from_the_service(user, alibaba):
    from accounts.services import user_suspend
    from appserver.errors import AccountSuspended

    user_suspend(user=user, reason="test")
    calls = alibaba.sts.assume_role_calls
    with pytest.raises(AccountSuspended):
        credentials_issue(user=user, scope="read", client_ip=None, user_agent="")
    assert alibaba.sts.assume_role_calls == calls


def test_user_admin_lists_suspension(admin_client, user):
    from accounts.services import user_suspend

    user_suspend(user=user, reason="chargeback")
    page = admin_client.get(reverse("admin:accounts_user_changelist"), {"is_suspended__exact": 1})
    assert page.status_code == 200
    assert user.username in page.content.decode()


def test_suspension_publishes_one_event_with_the_suspended_user(user):
    from accounts.services import user_suspend
    from accounts.signals import user_suspended

    received = []

    def listener(sender, *, user, **kwargs):
        received.append((user.pk, user.is_suspended))

    user_suspended.connect(listener)
    try:
        user_suspend(user=user, reason="test")
    finally:
        user_suspended.disconnect(listener)
    assert received == [(user.pk, True)]


def test_admin_ends_a_users_session(admin_client, user, other_user):
    from accounts.models import LoginSession
    from accounts.services import session_refresh, session_start
    from appserver.errors import TokenNotValid

    pair = session_start(user=user, user_agent="lost phone")
    kept = session_start(user=other_user)
    page = admin_client.get(reverse("admin:accounts_loginsession_changelist"))
    assert page.status_code == 200
    assert "lost phone" in page.content.decode()

    lost = LoginSession.objects.get(user=user)
    response = admin_client.post(
        reverse("admin:accounts_loginsession_changelist"),
        {"action": "end_sessions", "_selected_action": [lost.pk]},
    )
    assert response.status_code == 302
    with pytest.raises(TokenNotValid):
        session_refresh(refresh=pair["refresh"])
    assert session_refresh(refresh=kept["refresh"])["refresh"]


def test_a_suspended_user_cannot_log_in(api_client, user, password):
    from accounts.services import user_suspend

    user_suspend(user=user, reason="test")
    response = api_client.post(
        "/api/auth/login/", {"username": user.username, "password": password}, format="json"
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "account_suspended"
