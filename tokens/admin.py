from __future__ import annotations

from django.contrib import admin

from tokens.models import CredentialGrant


@admin.register(CredentialGrant)
class CredentialGrantAdmin(admin.ModelAdmin):
    """The credential ledger: an audit trail, so nobody edits it, not even superusers. The
    model holds no secret or token, so nothing secret can show here."""

    list_display = (
        "created_at",
        "user",
        "scope",
        "access_key_id",
        "expiration",
        "times_served",
        "client_ip",
    )
    list_filter = (
        "scope",
        ("created_at", admin.DateFieldListFilter),
        ("user", admin.RelatedOnlyFieldListFilter),
        "bucket",
    )
    search_fields = (
        "access_key_id",
        "user__username",
        "user__public_id",
        "prefix",
        "sts_request_id",
        "client_ip",
    )
    date_hierarchy = "created_at"
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    show_full_result_count = False  # COUNT(*) over a large ledger on every page is wasteful

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
