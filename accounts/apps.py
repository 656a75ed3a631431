from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AccountsConfig(AppConfig):
    default = True
    name = "accounts"
    verbose_name = "End users"

    def ready(self) -> None:
        from django.db.models.signals import post_delete

        from accounts import schema  # noqa: F401  (registers the OpenAPI extension)
        from accounts.models import User
        from accounts.token_state import user_deleted_tokens_gone

        post_delete.connect(
            user_deleted_tokens_gone, sender=User, dispatch_uid="accounts.tokens_gone"
        )


class AdminConfig(admin_apps.AdminConfig):
    """Django's admin app whose default site asks staff for a one-time password."""

    default = False
    default_site = "accounts.admin_site.AdminSite"
