"""The admin site: Django's, plus a one-time password for staff when ADMIN_REQUIRE_OTP is on.

With it on (the production default), a staff user must log in with a password and a TOTP code
from a device registered for them (django-otp); one without a confirmed device is refused, as if
not staff. The setting is read on every request, not when the site is built.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.admin import AdminSite as DjangoAdminSite
from django.contrib.admin.forms import AdminAuthenticationForm
from django_otp.admin import OTPAdminAuthenticationForm, OTPAdminSite


class AdminSite(OTPAdminSite):
    def __init__(self, name: str = "admin") -> None:
        super().__init__(name)

    @property
    def login_form(self):  # type: ignore[override]
        return OTPAdminAuthenticationForm if settings.ADMIN_REQUIRE_OTP else AdminAuthenticationForm

    @property
    def login_template(self):  # type: ignore[override]
        return OTPAdminSite.login_template if settings.ADMIN_REQUIRE_OTP else None

    def has_permission(self, request) -> bool:
        if settings.ADMIN_REQUIRE_OTP:
            return super().has_permission(request)
        return DjangoAdminSite.has_permission(self, request)
