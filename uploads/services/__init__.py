"""Every write of the uploads app: tickets, callbacks, quotas, deletions and repairs.

Locks (SELECT ... FOR UPDATE inside transaction.atomic): ticket requests, expiry and deletions
lock the owner's StorageUsage row first, then tickets (SKIP LOCKED) or the upload row; a callback
locks its ticket, then the usage row. Parallel requests of one user serialise on the usage row,
and since nobody waits for a ticket while holding the usage row, nothing deadlocks.

Quota accounting: issuing a ticket reserves its declared size and one object; the accepted
upload releases the reservation and adds the object's real size to what is used; a refused
upload or an expired ticket releases the reservation.

Modules, one concern each: tickets (issue, expire), reservation (a ticket's quota and row: one
statement on PostgreSQL, the locked path elsewhere), ticket_tokens (the x:ticket MAC),
callback_facts (the callback body and the answers), rules (why an upload is refused),
decision (callbacks, confirmations and the sweep decide here), accept_at_once (the one-statement
fast path), quota (the usage row), deletions, repairs (the sweep's and reconciliation's writes).
"""

from uploads.services.callback_facts import (
    CallbackAnswer,
    CallbackBodyInvalid,
    CallbackFacts,
    callback_parse,
    upload_answer,
)
from uploads.services.decision import callback_decide, callback_handle
from uploads.services.deletions import upload_delete, uploads_delete_by_admin
from uploads.services.quota import QuotaExceeded
from uploads.services.repairs import upload_adopt, upload_set_missing, upload_verify
from uploads.services.ticket_tokens import ticket_token
from uploads.services.tickets import (
    CALLBACK_BODY,
    CALLBACK_BODY_TYPE,
    IssuedTicket,
    ticket_expire,
    ticket_issue,
    tickets_expire,
)

__all__ = [
    "CALLBACK_BODY",
    "CALLBACK_BODY_TYPE",
    "CallbackAnswer",
    "CallbackBodyInvalid",
    "CallbackFacts",
    "IssuedTicket",
    "QuotaExceeded",
    "callback_decide",
    "callback_handle",
    "callback_parse",
    "ticket_expire",
    "ticket_issue",
    "ticket_token",
    "tickets_expire",
    "upload_adopt",
    "upload_answer",
    "upload_delete",
    "upload_set_missing",
    "upload_verify",
    "uploads_delete_by_admin",
]
