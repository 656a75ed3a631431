"""Staff views: endpoints (the secret is write-only), events and deliveries (read-only), and
replay: select events or deliveries, or filter the events by time and "select all", then run
"Deliver again"."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from events.models import Delivery, Event, EventType, WebhookEndpoint
from events.secrets import secret_seal
from events.services import endpoint_url_check, events_replay


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https")
    event_types = forms.MultipleChoiceField(
        choices=EventType.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None checked: every type.",
    )
    # Write-only: never rendered back, not even masked.
    secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text=(
            "The signing secret (at least 24 characters), e.g. from "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`. Required for a new "
            "endpoint; leave empty to keep the current one. Never shown again."
        ),
    )

    class Meta:
        model = WebhookEndpoint
        fields = ("name", "url", "event_types", "active")

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        endpoint_url_check(url)
        return url

    def clean_secret(self) -> str:
        secret = self.cleaned_data.get("secret", "")
        if not secret and self.instance.pk is None:
            raise forms.ValidationError("A new endpoint needs a secret.")
        if secret and len(secret) < 24:
            raise forms.ValidationError("At least 24 characters.")
        return secret

    def save(self, commit: bool = True) -> WebhookEndpoint:
        endpoint = super().save(commit=False)
        if self.cleaned_data.get("secret"):
            endpoint.secret_sealed = secret_seal(self.cleaned_data["secret"])
        if commit:
            endpoint.save()
        return endpoint


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ("id", "name", "url", "types", "active", "created_at")
    list_filter = ("active",)

    @admin.display(description="Event types")
    def types(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.event_types) or "all"


@admin.action(description="Deliver again (to every active endpoint that wants them)")
def replay_events(modeladmin, request, queryset) -> None:
    queued = events_replay(event_ids=queryset.values_list("pk", flat=True))
    modeladmin.message_user(request, f"Queued {queued} deliveries again.", messages.SUCCESS)


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Event)
class EventAdmin(_ReadOnly):
    list_display = ("id", "type", "occurred_at", "user_public_id", "uid", "dispatched")
    list_filter = ("type", "occurred_at", "dispatched")
    date_hierarchy = "occurred_at"
    search_fields = ("=uid", "=user_public_id")
    actions = [replay_events]


@admin.register(Delivery)
class DeliveryAdmin(_ReadOnly):
    list_display = (
        "id",
        "event",
        "endpoint",
        "state",
        "attempts",
        "last_status",
        "last_error",
        "next_attempt_at",
        "delivered_at",
    )
    list_filter = ("state", "endpoint")
    search_fields = ("=event__uid", "=user_public_id")
    list_select_related = ("event", "endpoint")
    raw_id_fields = ("event",)
    actions = ["replay"]

    @admin.action(description="Deliver again")
    def replay(self, request, queryset) -> None:
        queued = 0
        for endpoint_id, event_id in queryset.values_list("endpoint_id", "event_id"):
            queued += events_replay(event_ids=[event_id], endpoint_ids=[endpoint_id])
        self.message_user(request, f"Queued {queued} deliveries again.", messages.SUCCESS)
