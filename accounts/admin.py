from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import User
from accounts.services import user_suspend, user_unsuspend


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ("username", "email", "public_id", "is_suspended", "is_staff", "date_joined")
    list_filter = ("is_suspended", "is_staff", "is_superuser", "is_active")
    search_fields = ("username", "email", "public_id")
    readonly_fields = ("public_id", "suspended_at", "last_login", "date_joined")
    fieldsets = (
        *BaseUserAdmin.fieldsets,
        ("Storage", {"fields": ("public_id", "is_suspended", "suspended_at", "suspension_reason")}),
    )
    actions = ["suspend_users", "unsuspend_users"]

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
