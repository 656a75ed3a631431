from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AccountsConfig(AppConfig):
    default = True
    name = "accounts"
    verbose_name = "End users"

    def ready(self) -> None:
        from accounts import schema  # noqa: F401  (registers the OpenAPI extension)


class AdminConfig(admin_apps.AdminConfig):
    """Django's admin app whose default site asks staff for a one-time password."""

    default = False
    default_site = "accounts.admin_site.AdminSite"
