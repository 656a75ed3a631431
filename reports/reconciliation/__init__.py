"""Reconciliation: compare the bucket with the metadata store, both ways, and repair.

Scope. Only keys under the managed root are ever listed, read or deleted: the part of
STORAGE_PREFIX_TEMPLATE before ``{user_public_id}`` ("users/"). ListObjects is always called with
a prefix at or below that root, so a foreign key ("other/x.txt", "users-archive/y") is never
even seen. `--prefix` may narrow the run (one user's prefix, or part of one), never widen it.

Walk. The scope is listed once, flat, in key order (ListObjects pages of RECONCILE_PAGE_SIZE
keys, marker pagination): one request per 1000 keys however many users there are. A user's keys
are contiguous in that order, so each user's rows are loaded when their first key shows up and
settled when their last one has passed; users with active rows but no object at all are settled
at the end. Compared both ways:

- object, no row, inside a known user's prefix  -> stray_object: adopt (row from a HEAD, usage
  counted) or delete, per RECONCILE_STRAY_OBJECTS; beyond the quota, or of a type no ticket
  allows, it is deleted either way. Objects younger than RECONCILE_GRACE_SECONDS
  or named by a still-valid ticket are left alone: their callback may be on its way.
- object under the root that belongs to no user -> unowned_object: reported; deleted only with
  RECONCILE_STRAY_OBJECTS="delete".
- active row, no object                          -> missing_object: marked missing, usage
  released (confirmed by a HEAD first: the row was read before the listing, so a delete that
  happened in between is told apart from a lost object).
- row marked missing whose object is back        -> reappeared_object: active again, counted.
- row deleted whose object remains               -> deleted_still_stored: the object is deleted
  (its owner asked for that and no longer pays for it).
- active row whose object differs in size or ETag -> changed_object: checked with a HEAD and
  repaired by uploads.services.repairs.upload_verify (the row follows the object, or the upload is
  refused and removed, as its callback would have been).
- ticket still "issued" past expiry + grace      -> expired_ticket: expired, reservation freed.

Safety. Dry run by default: findings are recorded on a ReconciliationRun (so the admin shows
them) but nothing else changes. With apply, each repair is its own transaction taking the same
locks in the same order as the upload services (the owner's StorageUsage row, then the row), and
re-checks the state it saw, so a run can be interrupted and started again at any time and a
second run finds nothing left to do.

This package only decides; the repairs of rows are the uploads services, which own the lock
order: upload_adopt, upload_set_missing (missing, or active again) and ticket_expire (one ticket:
tickets_expire would expire every overdue ticket of every user, which a run narrowed by
--prefix must not do). Deleting an object is uploads.oss's.

Modules: scope (the managed prefix, what is counted, the progress a run reports) and run (the
reconciler and `reconciliation_run`). Callers import from `reports.reconciliation`.
"""

from reports.reconciliation.run import Progress, reconciliation_run
from reports.reconciliation.scope import ReconcileProgress, managed_root, reconcile_prefix_validate

__all__ = [
    "Progress",
    "ReconcileProgress",
    "managed_root",
    "reconcile_prefix_validate",
    "reconciliation_run",
]
