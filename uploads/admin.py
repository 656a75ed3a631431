"""Staff views of the metadata store. Deleting uploads goes through services (object first)."""

from __future__ import annotations

import csv

from django.contrib import admin, messages
from django.http import HttpResponse
from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html

from accounts.admin import UserAdmin
from accounts.models import AccountErasure
from uploads import oss
from uploads.erasure import account_erase
from uploads.models import CallbackRefusal, StorageUsage, Upload, UploadTicket
from uploads.selectors import upload_has_variants, upload_variants, usage_limits
from uploads.services import uploads_delete_by_admin


def _thumbnails_allowed(response: HttpResponse) -> HttpResponse:
    # django-csp reads this per-response addition (what its csp_update decorator sets): the
    # thumbnails are signed URLs on the bucket.
    response._csp_update = {"img-src": oss.oss_browser_origins()}
    return response


@admin.register(Upload)
class UploadAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "thumbnail",
        "key",
        "owner",
        "human_size",
        "content_type",
        "image_dimensions",
        "status",
        "created_at",
    )
    list_filter = (
        "status",
        "content_type",
        "created_at",
        ("owner", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = ("key", "filename", "owner__username")
    list_select_related = ("owner",)
    raw_id_fields = ("owner", "ticket")
    readonly_fields = [f.name for f in Upload._meta.fields] + ["thumbnail"]
    date_hierarchy = "created_at"
    actions = ["delete_objects", "export_csv"]

    class Media:
        css = {"all": ["uploads/admin.css"]}  # a stylesheet, not style="": the CSP allows no inline

    def changelist_view(self, request, extra_context=None):
        return _thumbnails_allowed(super().changelist_view(request, extra_context))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        return _thumbnails_allowed(super().change_view(request, object_id, form_url, extra_context))

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # Django's own delete would drop the row and leave the object and quota behind.
        return False

    @admin.display(description="size", ordering="size")
    def human_size(self, obj: Upload) -> str:
        return filesizeformat(obj.size)

    @admin.display(description="image")
    def image_dimensions(self, obj: Upload) -> str:
        if obj.image_width and obj.image_height:
            return f"{obj.image_width}x{obj.image_height} {obj.image_format}".strip()
        return ""

    @admin.display(description="preview")
    def thumbnail(self, obj: Upload) -> str:
        if not upload_has_variants(upload=obj):
            return ""
        try:
            # The small derived image OSS makes, not the original; the original only when the
            # operator configured no thumbnail variant.
            variants = upload_variants(uploads=[obj])[obj.pk]
            url = (variants.urls if variants else {}).get("thumbnail") or (
                oss.oss_sign_download_url(key=obj.key).url
            )
        except oss.StorageUnavailable:
            return "(storage unavailable)"
        return format_html('<img src="{}" alt="" loading="lazy" class="upload-thumb">', url)

    @admin.action(description="Delete the objects from OSS and mark the uploads deleted")
    def delete_objects(self, request, queryset) -> None:
        deleted, failed = uploads_delete_by_admin(
            upload_ids=list(queryset.values_list("pk", flat=True))
        )
        self.message_user(request, f"Deleted {deleted} upload(s).", messages.SUCCESS)
        if failed:
            self.message_user(request, f"{failed} could not be deleted; retry.", messages.WARNING)

    @admin.action(description="Export as CSV")
    def export_csv(self, request, queryset) -> HttpResponse:
        response = HttpResponse(content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="uploads.csv"'
        writer = csv.writer(response)
        columns = [
            "id",
            "owner",
            "bucket",
            "key",
            "filename",
            "size",
            "content_type",
            "etag",
            "image_width",
            "image_height",
            "status",
            "created_at",
        ]
        writer.writerow(columns)
        for upload in queryset.select_related("owner").order_by("id").iterator():
            row = [getattr(upload, c) for c in columns]
            row[1] = upload.owner.username
            # Spreadsheet apps execute cells starting with these: neutralise them.
            writer.writerow([f"'{v}" if isinstance(v, str) and v[:1] in "=+-@" else v for v in row])
        return response


@admin.register(UploadTicket)
class UploadTicketAdmin(admin.ModelAdmin):
    list_display = ("id", "owner", "key", "declared_size", "content_type", "status", "expires_at")
    list_filter = ("status", "mode", "created_at")
    search_fields = ("key", "owner__username", "id")
    list_select_related = ("owner",)
    readonly_fields = [f.name for f in UploadTicket._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(CallbackRefusal)
class CallbackRefusalAdmin(admin.ModelAdmin):
    list_display = ("created_at", "reason", "key", "owner", "size", "object_removed", "message")
    list_filter = ("reason", "object_removed", "created_at")
    search_fields = ("key", "owner__username", "oss_request_id")
    list_select_related = ("owner",)
    readonly_fields = [f.name for f in CallbackRefusal._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class UsageDisplayMixin:
    @admin.display(description="used")
    def used(self, obj: StorageUsage) -> str:
        max_bytes, max_objects = usage_limits(usage=obj)
        return (
            f"{filesizeformat(obj.bytes_used)} of {filesizeformat(max_bytes)}, "
            f"{obj.objects_used} of {max_objects} files"
        )

    @admin.display(description="reserved by open tickets")
    def reserved(self, obj: StorageUsage) -> str:
        return f"{filesizeformat(obj.bytes_reserved)}, {obj.objects_reserved} files"


@admin.register(StorageUsage)
class StorageUsageAdmin(UsageDisplayMixin, admin.ModelAdmin):
    list_display = ("user", "used", "reserved", "max_bytes", "max_objects")
    search_fields = ("user__username",)
    list_select_related = ("user",)
    fields = ("user", "max_bytes", "max_objects", "used", "reserved")
    readonly_fields = ("user", "used", "reserved")

    def has_add_permission(self, request) -> bool:
        return False


class StorageUsageInline(UsageDisplayMixin, admin.StackedInline):
    """Quota overrides on the user's page. Counters are read-only: services own them."""

    model = StorageUsage
    can_delete = False
    fields = ("max_bytes", "max_objects", "used", "reserved")
    readonly_fields = ("used", "reserved")
    verbose_name = verbose_name_plural = "storage quota"


# The quota belongs to uploads, so uploads puts it on the user's admin page: accounts knows
# nothing of the apps built on it.
UserAdmin.inlines = [*UserAdmin.inlines, StorageUsageInline]


@admin.action(
    description="Erase: delete every object and row of the account, keep a receipt",
    permissions=["delete"],
)
def erase_users(modeladmin, request, queryset) -> None:
    erased = waiting = 0
    for user in queryset.exclude(pk=request.user.pk):  # never oneself
        try:
            account_erase(user=user, reason=AccountErasure.Reason.STAFF)
            erased += 1
        except oss.StorageUnavailable:
            waiting += 1
    modeladmin.message_user(request, f"Erased {erased} account(s).", messages.SUCCESS)
    if waiting:
        modeladmin.message_user(
            request,
            f"{waiting} account(s) are disabled and wait for the storage service; "
            "expire_guests finishes them.",
            messages.WARNING,
        )


# Erasing empties the user's prefix, which uploads owns: the action is attached from here.
UserAdmin.actions = [*UserAdmin.actions, erase_users]
