"""Brute force: failed logins lock out a (username, address) pair, in the API and the admin,
and staff can be required to add a TOTP code. Over real HTTP against the live server."""

from __future__ import annotations

import re

import pytest
import requests
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def limit_3(settings):
    settings.AXES_FAILURE_LIMIT = 3
    return settings


def _login(base: str, username: str, password: str, **headers: str) -> requests.Response:
    return requests.post(
        f"{base}/api/auth/login/",
        json={"username": username, "password": password},
        headers=headers,
        timeout=10,
    )


def test_wrong_passwords_lock_out_that_username_from_that_address(
    live_server, user, password, limit_3
):
    codes = [_login(live_server.url, user.username, "nope").status_code for _ in range(3)]
    assert codes == [401, 401, 429]

    # Even the right password is refused now, in the one error shape, with when to retry.
    locked = _login(live_server.url, user.username.upper(), password)
    assert locked.status_code == 429
    assert locked.json() == {
        "error": {
            "code": "login_locked",
            "message": "Too many failed logins for this username from your address. "
            "Retry in 15 minutes.",
        }
    }
    assert locked.headers["Retry-After"] == "900"
    # A forged X-Forwarded-For is not another address (no trusted proxy is configured).
    spoofed = _login(live_server.url, user.username, password, **{"X-Forwarded-For": "10.9.8.7"})
    assert spoofed.status_code == 429


def test_the_owner_on_another_address_still_logs_in(
    live_server, user, other_user, password, limit_3
):
    limit_3.REST_FRAMEWORK = {**limit_3.REST_FRAMEWORK, "NUM_PROXIES": 1}
    attacker = {"X-Forwarded-For": "203.0.113.9"}
    for _ in range(3):
        _login(live_server.url, user.username, "nope", **attacker)
    assert _login(live_server.url, user.username, password, **attacker).status_code == 429

    owner = {"X-Forwarded-For": "198.51.100.20"}
    assert _login(live_server.url, user.username, password, **owner).status_code == 200
    # The attacker's address is not blocked for other accounts either (no lock on the address).
    assert _login(live_server.url, other_user.username, password, **attacker).status_code == 200


def test_a_successful_login_resets_the_count(live_server, user, password, limit_3):
    for _ in range(2):
        assert _login(live_server.url, user.username, "nope").status_code == 401
    assert _login(live_server.url, user.username, password).status_code == 200
    codes = [_login(live_server.url, user.username, "nope").status_code for _ in range(3)]
    assert codes == [401, 401, 429]


def _admin_login(session: requests.Session, base: str, **fields: str) -> requests.Response:
    page = session.get(f"{base}/admin/login/", timeout=10)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    return session.post(
        f"{base}/admin/login/?next=/admin/",
        data={"csrfmiddlewaretoken": csrf, **fields},
        headers={"Referer": f"{base}/admin/login/"},
        allow_redirects=False,
        timeout=10,
    )


def test_the_admin_login_is_locked_out_too(live_server, staff_user, password, limit_3):
    session = requests.Session()
    codes = [
        _admin_login(
            session, live_server.url, username=staff_user.username, password="nope"
        ).status_code
        for _ in range(3)
    ]
    assert codes == [200, 200, 429]
    locked = _admin_login(session, live_server.url, username=staff_user.username, password=password)
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.text
    assert session.get(f"{live_server.url}/admin/", allow_redirects=False).status_code == 302


def test_without_required_otp_staff_log_in_with_a_password(
    live_server, staff_user, password, settings
):
    settings.ADMIN_REQUIRE_OTP = False
    session = requests.Session()
    response = _admin_login(
        session, live_server.url, username=staff_user.username, password=password
    )
    assert response.status_code == 302
    assert session.get(f"{live_server.url}/admin/", timeout=10).status_code == 200


def test_required_otp_refuses_staff_without_a_device(live_server, staff_user, password, settings):
    settings.ADMIN_REQUIRE_OTP = True
    session = requests.Session()
    response = _admin_login(
        session, live_server.url, username=staff_user.username, password=password
    )
    assert response.status_code == 200  # the login form again
    assert "otp_token" in response.text
    index = session.get(f"{live_server.url}/admin/", allow_redirects=False, timeout=10)
    assert index.status_code == 302
    assert index.headers["Location"].startswith("/admin/login/")


def test_required_otp_admits_staff_with_a_totp_code(live_server, staff_user, password, settings):
    settings.ADMIN_REQUIRE_OTP = True
    # django-otp holds a device back for a second (doubling) after a wrong code; not under test.
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    device = TOTPDevice.objects.create(user=staff_user, name="phone", confirmed=True)
    code = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift).token()
    session = requests.Session()

    def with_code(value: int) -> requests.Response:
        return _admin_login(
            session,
            live_server.url,
            username=staff_user.username,
            password=password,
            otp_device=device.persistent_id,
            otp_token=f"{value:0{device.digits}d}",
        )

    assert with_code((code + 1) % 10**device.digits).status_code == 200  # refused
    assert session.get(f"{live_server.url}/admin/", allow_redirects=False).status_code == 302

    response = with_code(code)
    assert response.status_code == 302, response.text[:3000]
    assert session.get(f"{live_server.url}/admin/", timeout=10).status_code == 200
