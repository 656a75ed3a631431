"""Tickets whose callback the app cannot edit: presigned PUT URLs ("url") and PostObject forms
("form").

An STS-mode app holds write credentials and sends whatever `x-oss-callback` it likes, so its
callback's size and type are checked with a HeadObject. Here the server signs the upload itself,
and the signature covers the callback: a presigned URL's signature covers Content-Type and every
x-oss-* header (the callback headers and `x-oss-forbid-overwrite` among them), and a POST policy
fixes the key, the size range, the type and the callback field. OSS refuses any change, so the
callback's ${size}, ${mimeType} and ${etag} are OSS's own (uploads.services trusts them without
a HeadObject). Such apps never hold write credentials.

Who signs: the user's own STS credentials of the "write" scope, the entry the credentials
endpoint caches (tokens.services, one AssumeRole per user per lifetime, single flight). Whatever
is signed stays within the user's prefix by OSS's own rules, and the server's RAM user needs no
write permission at all. The price: a ticket lives at most as long as those credentials (see
docs/production-alibaba.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from tokens.services import credentials_issue
from uploads import oss
from uploads.models import UploadTicket
from uploads.services import IssuedTicket, ticket_issue

Mode = UploadTicket.Mode
SIGNING_SCOPE = "write"
# Refusing to overwrite is part of what the signature covers: an upload URL or form can only
# create its object, never replace one.
FORBID_OVERWRITE = {"x-oss-forbid-overwrite": "true"}


@dataclass(frozen=True)
class SignedTicket:
    issued: IssuedTicket
    upload: dict[str, Any] | None  # None for STS tickets: the app signs its own requests


def post_policy(
    *,
    bucket: str,
    key: str,
    max_size: int,
    content_type: str,
    callback: str,
    variables: dict[str, str],
    expires_at: datetime,
    signer_fields: dict[str, str],
) -> dict[str, Any]:
    """The POST policy of a form ticket: every field that decides what is stored or what the
    callback says is fixed, and OSS checks it before storing anything."""
    return {
        "expiration": expires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "conditions": [
            {"bucket": bucket},
            ["eq", "$key", key],
            ["content-length-range", 0, max_size],
            ["eq", "$Content-Type", content_type],
            ["eq", "$callback", callback],
            *(["eq", f"${name}", value] for name, value in variables.items()),
            ["eq", "$x-oss-forbid-overwrite", "true"],
            ["eq", "$success_action_status", "200"],
            *({name: value} for name, value in signer_fields.items()),
        ],
    }


def _url_upload(*, issued: IssuedTicket, signer: oss.Signer, now: datetime) -> dict[str, Any]:
    ticket = issued.ticket
    headers = {"Content-Type": ticket.content_type, **issued.headers, **FORBID_OVERWRITE}
    expires_in = max(1, int((ticket.expires_at - now).total_seconds()))
    url = oss.oss_presign_put(signer=signer, key=ticket.key, headers=headers, expires_in=expires_in)
    return {"method": "PUT", "url": url, "headers": headers}


def _form_upload(*, issued: IssuedTicket, signer: oss.Signer, now: datetime) -> dict[str, Any]:
    ticket = issued.ticket
    callback = issued.headers["x-oss-callback"]
    variables = issued.callback["callbackVar"]
    signer_fields = oss.oss_post_signer_fields(signer=signer, now=now)
    policy = post_policy(
        bucket=ticket.bucket,
        key=ticket.key,
        max_size=ticket.declared_size,
        content_type=ticket.content_type,
        callback=callback,
        variables=variables,
        expires_at=ticket.expires_at,
        signer_fields=signer_fields,
    )
    fields = {
        "key": ticket.key,
        "Content-Type": ticket.content_type,
        "success_action_status": "200",
        "callback": callback,
        **variables,
        **FORBID_OVERWRITE,
        **signer_fields,
        **oss.oss_sign_post_policy(signer=signer, policy=policy, signer_fields=signer_fields),
    }
    return {"method": "POST", "url": oss.oss_bucket_url(), "fields": fields, "file_field": "file"}


def ticket_issue_signed(
    *,
    user: User,
    mode: str,
    filename: str,
    size: int,
    content_type: str,
    metadata: dict[str, str] | None = None,
    client_ip: str | None = None,
    user_agent: str = "",
) -> SignedTicket:
    """Issue a ticket of `mode`; for url and form, with the upload the server signed for it."""
    if mode == Mode.STS:
        issued = ticket_issue(
            user=user, filename=filename, size=size, content_type=content_type, metadata=metadata
        )
        return SignedTicket(issued=issued, upload=None)
    # Before anything is reserved, and outside any transaction: this may call STS. The ticket's
    # own throttle limits these requests, so they do not count against the credentials rate.
    credentials = credentials_issue(
        user=user, scope=SIGNING_SCOPE, client_ip=client_ip, user_agent=user_agent, metered=False
    )
    signer = oss.Signer(
        credentials.access_key_id, credentials.access_key_secret, credentials.security_token
    )
    build = _url_upload if mode == Mode.URL else _form_upload
    with transaction.atomic():  # a ticket is reserved only with its signed upload
        now = timezone.now()
        issued = ticket_issue(
            user=user,
            filename=filename,
            size=size,
            content_type=content_type,
            metadata=metadata,
            mode=mode,
            not_after=credentials.expiration,
            now=now,
        )
        upload = build(issued=issued, signer=signer, now=now)
    return SignedTicket(issued=issued, upload=upload)
