"""Manage webhook endpoints from the command line (the admin does the same)."""

from __future__ import annotations

import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from events.models import Delivery, WebhookEndpoint
from events.secrets import secret_generate
from events.services import endpoint_create, endpoint_update, events_replay


def _types(value: str | None) -> list[str] | None:
    return None if value is None else [t for t in value.split(",") if t.strip()]


def _when(value: str | None):
    if value is None:
        return None
    parsed = parse_datetime(value)
    if parsed is None:
        raise CommandError(f"Not an ISO 8601 time: {value!r}")
    return parsed


class Command(BaseCommand):
    help = "Webhook endpoints: list, add, update, rotate-secret, remove, replay."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="Endpoints with their pending and failed deliveries.")
        add = sub.add_parser("add", help="A new endpoint; prints its secret once.")
        add.add_argument("url")
        add.add_argument("--events", help="Comma-separated event types (default: all).")
        add.add_argument("--name", default="")
        add.add_argument("--secret-stdin", action="store_true", help="Read the secret from stdin.")
        update = sub.add_parser("update", help="Change an endpoint.")
        update.add_argument("id", type=int)
        update.add_argument("--url")
        update.add_argument("--events", help="Comma-separated types; empty string: all.")
        update.add_argument("--name")
        state = update.add_mutually_exclusive_group()
        state.add_argument("--active", dest="active", action="store_true", default=None)
        state.add_argument("--inactive", dest="active", action="store_false")
        rotate = sub.add_parser("rotate-secret", help="A new secret; prints it once.")
        rotate.add_argument("id", type=int)
        remove = sub.add_parser("remove", help="Delete an endpoint and its deliveries.")
        remove.add_argument("id", type=int)
        replay = sub.add_parser("replay", help="Deliver the events of a time range again.")
        replay.add_argument("--since", required=True, help="ISO 8601, inclusive.")
        replay.add_argument("--until", help="ISO 8601, exclusive (default: now).")
        replay.add_argument("--endpoint", type=int, action="append", help="Only these ids.")

    def handle(self, *args, action: str, **options) -> None:
        try:
            getattr(self, "_" + action.replace("-", "_"))(**options)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        except WebhookEndpoint.DoesNotExist as exc:
            raise CommandError("No such endpoint.") from exc

    def _list(self, **options) -> None:
        for endpoint in WebhookEndpoint.objects.order_by("id"):
            pending = endpoint.deliveries.filter(state=Delivery.State.PENDING).count()
            failed = endpoint.deliveries.filter(state=Delivery.State.FAILED).count()
            types = ",".join(endpoint.event_types) or "all"
            state = "active" if endpoint.active else "inactive"
            self.stdout.write(
                f"{endpoint.pk}\t{state}\t{endpoint.url}\t{types}\t"
                f"pending={pending}\tfailed={failed}\t{endpoint.name}"
            )

    def _add(self, *, url, events, name, secret_stdin, **options) -> None:
        secret = sys.stdin.readline().strip() if secret_stdin else ""
        endpoint, secret = endpoint_create(
            url=url, event_types=_types(events) or [], name=name, secret=secret
        )
        self.stdout.write(f"Endpoint {endpoint.pk} added.")
        if not secret_stdin:
            self.stdout.write(f"Secret (shown once, store it with the receiver): {secret}")

    def _update(self, *, id, url, events, name, active, **options) -> None:
        endpoint = WebhookEndpoint.objects.get(pk=id)
        endpoint_update(endpoint, url=url, event_types=_types(events), name=name, active=active)
        self.stdout.write(f"Endpoint {endpoint.pk} updated.")

    def _rotate_secret(self, *, id, **options) -> None:
        endpoint = WebhookEndpoint.objects.get(pk=id)
        secret = secret_generate()
        endpoint_update(endpoint, secret=secret)
        self.stdout.write(f"New secret (shown once): {secret}")

    def _remove(self, *, id, **options) -> None:
        WebhookEndpoint.objects.get(pk=id).delete()
        self.stdout.write(f"Endpoint {id} removed.")

    def _replay(self, *, since, until, endpoint, **options) -> None:
        queued = events_replay(since=_when(since), until=_when(until), endpoint_ids=endpoint)
        self.stdout.write(f"Queued {queued} deliveries again.")
