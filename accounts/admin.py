from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import AccountErasure, ExternalIdentity, LoginSession, User
from accounts.services import session_revoke, user_suspend, user_unsuspend


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = (
        "username",
        "email",
        "public_id",
        "is_suspended",
        "is_guest",
        "is_staff",
        "date_joined",
    )
    list_filter = ("is_suspended", "is_guest", "is_staff", "is_superuser", "is_active")
    search_fields = ("username", "email", "public_id")
    readonly_fields = (
        "public_id",
        "suspended_at",
        "last_login",
        "date_joined",
        "linked_identities",
    )
    fieldsets = (
        *BaseUserAdmin.fieldsets,
        (
            "Storage",
            {
                "fields": (
                    "public_id",
                    "linked_identities",
                    "is_guest",
                    "is_suspended",
                    "suspended_at",
                    "suspension_reason",
                )
            },
        ),
    )
    actions = ["suspend_users", "unsuspend_users"]

    # Read-only text, not an inline: the change form posts no formset for them.
    @admin.display(description="Linked identities")
    def linked_identities(self, user: User) -> str:
        rows = ExternalIdentity.objects.filter(user=user).order_by("pk")
        return ", ".join(f"{i.provider} (since {i.created_at:%Y-%m-%d})" for i in rows) or "none"

    @admin.action(description="Suspend: no more credentials or uploads, cached credentials dropped")
    def suspend_users(self, request, queryset) -> None:
        for user in queryset:
            user_suspend(user=user, reason=f"suspended by {request.user.get_username()}")
        self.message_user(request, f"Suspended {queryset.count()} user(s).", messages.SUCCESS)

    @admin.action(description="Unsuspend")
    def unsuspend_users(self, request, queryset) -> None:
        for user in queryset:
            user_unsuspend(user=user)
        self.message_user(request, f"Unsuspended {queryset.count()} user(s).", messages.SUCCESS)


@admin.register(LoginSession)
class LoginSessionAdmin(admin.ModelAdmin):
    """Logins per device, read-only; ending one stops its refresh token (a lost phone)."""

    list_display = (
        "user",
        "created_at",
        "last_used_at",
        "expires_at",
        "ip_address",
        "user_agent",
        "ended_at",
        "end_reason",
    )
    list_filter = ("end_reason",)
    search_fields = ("user__username", "user__public_id", "ip_address")
    list_select_related = ("user",)
    exclude = ("refresh_jti",)
    actions = ["end_sessions"]

    @admin.action(description="End: their refresh tokens stop working")
    def end_sessions(self, request, queryset) -> None:
        ended = sum(
            session_revoke(user=session.user, session_id=session.id)
            for session in queryset.select_related("user")
        )
        self.message_user(request, f"Ended {ended} session(s).", messages.SUCCESS)


@admin.register(AccountErasure)
class AccountErasureAdmin(admin.ModelAdmin):
    """Receipts: which public id was erased, when, why and how much. No personal data."""

    list_display = (
        "public_id",
        "reason",
        "state",
        "objects_deleted",
        "bytes_deleted",
        "uploads_deleted",
        "identities_deleted",
        "started_at",
        "finished_at",
    )
    list_filter = ("state", "reason")
    search_fields = ("public_id",)
    fields = (*list_display, "prefix")
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
