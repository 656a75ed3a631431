"""Look-alike usernames are one account name: NFKC, case and UTS #39 confusable skeletons, at
registration, in the admin and in createsuperuser, held by database constraints."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.urls import reverse

from accounts.models import User
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

FULLWIDTH_DEMO = "\uff44\uff45\uff4d\uff4f"
CYRILLIC_E_DEMO = "d\u0435mo"
LOOK_ALIKES = {
    "demo": ["Demo", "DEMO", FULLWIDTH_DEMO, CYRILLIC_E_DEMO, "dern\u043e"],
    "admin": ["ADMIN", "Admin", "adrnin", "\u0430dmin"],
}


def _register(base: str, username: str, password: str) -> requests.Response:
    return requests.post(
        f"{base}/api/auth/register/",
        json={"username": username, "password": password},
        timeout=60,  # password hashing is slow on purpose, and these run side by side
    )


@pytest.mark.parametrize("original", sorted(LOOK_ALIKES))
def test_look_alikes_of_an_existing_name_are_refused_at_registration(
    live_server, password, original
):
    assert _register(live_server.url, original, password).status_code == 201
    for look_alike in LOOK_ALIKES[original]:
        response = _register(live_server.url, look_alike, password)
        assert response.status_code == 409, look_alike
        assert response.json()["error"]["code"] == "username_taken"
    assert list(User.objects.values_list("username", flat=True)) == [original]


def test_a_fullwidth_name_is_stored_normalised_and_logs_in_any_case(live_server, password):
    response = _register(live_server.url, "\uff24\uff45\uff4d\uff4f", password)  # fullwidth Demo
    assert response.status_code == 201
    assert response.json()["user"]["username"] == "Demo"
    for spelling in ("Demo", "demo", "DEMO", FULLWIDTH_DEMO):
        login = requests.post(
            f"{live_server.url}/api/auth/login/",
            json={"username": spelling, "password": password},
            timeout=10,
        )
        assert login.status_code == 200, spelling
    # A look-alike is not a spelling of the name: it does not log in.
    login = requests.post(
        f"{live_server.url}/api/auth/login/",
        json={"username": CYRILLIC_E_DEMO, "password": password},
        timeout=10,
    )
    assert login.status_code == 401


def test_distinct_names_still_register(live_server, password):
    for name in ("demo", "demos", "dem0", "maria", "mario"):
        assert _register(live_server.url, name, password).status_code == 201, name


def test_the_database_refuses_case_and_look_alike_duplicates_without_the_check():
    UserFactory(username="demo")
    for clash in ("DEMO", CYRILLIC_E_DEMO):
        # save() skips the friendly check the services and forms run: the indexes hold alone.
        with pytest.raises(IntegrityError), transaction.atomic():
            User(username=clash).save()
    assert User.objects.count() == 1


def test_concurrent_registrations_of_look_alikes_let_exactly_one_in(live_server, password):
    names = ["racer", "Racer", "RACER", "r\u0430cer"]
    start = threading.Barrier(len(names))

    def register(name: str) -> int:
        start.wait(timeout=30)
        return _register(live_server.url, name, password).status_code

    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        codes = list(pool.map(register, names))
    assert sorted(codes) == [201, 409, 409, 409]
    assert User.objects.count() == 1


def test_the_admin_refuses_a_look_alike(admin_client, password):
    UserFactory(username="demo")
    for clash in ("DEMO", CYRILLIC_E_DEMO):
        response = admin_client.post(
            reverse("admin:accounts_user_add"),
            {"username": clash, "password1": password, "password2": password},
        )
        assert response.status_code == 200  # the form again, with the error
        assert "looks too much like one that is" in response.content.decode() or (
            "already exists" in response.content.decode()
        )
    assert not User.objects.filter(username__in=["DEMO", CYRILLIC_E_DEMO]).exists()


def test_the_admin_can_still_edit_a_user_without_renaming(admin_client, user):
    response = admin_client.post(
        reverse("admin:accounts_user_change", args=[user.pk]),
        {
            "username": user.username,
            "email": "new@example.com",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
            "is_active": "on",
            "storage_usage-TOTAL_FORMS": "0",
            "storage_usage-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    user.refresh_from_db()
    assert user.email == "new@example.com"


@pytest.mark.parametrize("clash", ["ADMIN", "\u0430dmin"])
def test_createsuperuser_refuses_a_look_alike(monkeypatch, clash):
    UserFactory(username="admin")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "correct-horse-battery-staple")
    with pytest.raises(CommandError) as raised:
        call_command(
            "createsuperuser", "--noinput", username=clash, email="ops@example.com", verbosity=0
        )
    assert "taken" in str(raised.value)
    assert User.objects.count() == 1
