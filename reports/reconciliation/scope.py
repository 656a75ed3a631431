"""What a run covers and counts: the managed prefix, the finding counters, the progress it
reports."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from appserver.errors import InvalidInput
from reports.models import ReconciliationFinding

Kind = ReconciliationFinding.Kind
Action = ReconciliationFinding.Action

_COUNTER = {
    Kind.STRAY_OBJECT: "stray_objects",
    Kind.UNOWNED_OBJECT: "unowned_objects",
    Kind.MISSING_OBJECT: "missing_objects",
    Kind.EXPIRED_TICKET: "expired_tickets",
    Kind.REAPPEARED_OBJECT: "other_findings",
    Kind.DELETED_STILL_STORED: "other_findings",
    Kind.CHANGED_OBJECT: "other_findings",
}
_REPAIRED = {
    Action.ADOPTED,
    Action.DELETED,
    Action.MARKED_MISSING,
    Action.EXPIRED,
    Action.RESTORED,
    Action.REPAIRED,
    Action.REFUSED,
}


@dataclass
class ReconcileProgress:
    units_done: int = 0  # users settled
    units_total: int = 0  # objects the store expects (active rows in scope), for the bar
    objects_listed: int = 0
    rows_checked: int = 0
    findings: int = 0
    skipped_recent: int = 0


def managed_root() -> str:
    """The part of STORAGE_PREFIX_TEMPLATE before the user id: every managed key starts so."""
    return settings.STORAGE_PREFIX_TEMPLATE.partition("{user_public_id}")[0]


def reconcile_prefix_validate(*, prefix: str | None) -> str:
    """The prefix a run covers: the managed root, or a narrower prefix inside it."""
    root = managed_root()
    if not prefix:
        return root
    if not prefix.startswith(root) or ".." in prefix.split("/"):
        raise InvalidInput(
            f"--prefix must lie inside the managed prefix {root!r}: this server never lists or "
            "touches keys outside it.",
            fields={"prefix": ["Outside the managed prefix."]},
        )
    return prefix
