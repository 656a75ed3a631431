"""Object writes: what a write may replace, what its session policy sees, what it needs.

OSS, as documented:

- `x-oss-forbid-overwrite: true` on PutObject, CopyObject, CompleteMultipartUpload, PutSymlink
  and PostObject (a form field there) refuses to replace an existing key: 409
  `FileAlreadyExists`. Absent or `false`, the write replaces it. Any other value is 400
  `InvalidArgument`. (Versioned buckets ignore the header; the emulator has none.)
- Every one of those writes, and AppendObject and UploadPart, is authorized as `oss:PutObject`;
  an upload that sets tags (`x-oss-tagging`) also needs `oss:PutObjectTagging`.
- RAM condition keys the session policy sees (how the emulator models them):
  `oss:x-oss-forbid-overwrite`, the header's value, and on the operations above,
  InitiateMultipartUpload and AppendObject, whose default is to write whatever exists, `false`
  when the header is absent, so that a policy requiring `true` refuses a request that leaves it
  out; `oss:x-oss-object-acl`, the ACL an upload asks for, only when it asks for one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from emulator.oss.errors import invalid_argument

if TYPE_CHECKING:
    from emulator.oss.pipeline import OssPipeline, PrincipalLike, Target
    from emulator.oss.wire import Request

FORBID_OVERWRITE = "x-oss-forbid-overwrite"
OBJECT_ACL = "x-oss-object-acl"

# Object writes the emulator does not implement, with the RAM action OSS authorizes them as: a
# principal whose policy denies the action gets AccessDenied, as from OSS; anyone else learns
# that the emulator does not implement it.
_UNIMPLEMENTED_WRITES = {
    ("PUT", "acl"): "oss:PutObjectAcl",
    ("PUT", "tagging"): "oss:PutObjectTagging",
    ("DELETE", "tagging"): "oss:DeleteObjectTagging",
    ("POST", "restore"): "oss:RestoreObject",
}


def forbid_overwrite(value: str) -> bool:
    """The header's meaning; raises InvalidArgument for anything but true/false."""
    if not value:
        return False
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise invalid_argument(
            "The x-oss-forbid-overwrite header must be true or false.",
            ArgumentName=FORBID_OVERWRITE,
            ArgumentValue=value,
        )
    return lowered == "true"


def write_context(fields: Mapping[str, str], *, overwrite_applies: bool) -> dict[str, str]:
    """The RAM condition keys of one write, from its headers (or PostObject's form fields)."""
    context: dict[str, str] = {}
    sent = fields.get(FORBID_OVERWRITE) or ""
    if sent or overwrite_applies:
        context[f"oss:{FORBID_OVERWRITE}"] = "true" if forbid_overwrite(sent) else "false"
    acl = fields.get(OBJECT_ACL) or ""
    if acl:
        context[f"oss:{OBJECT_ACL}"] = acl
    return context


def authorize_write(
    service: OssPipeline,
    principal: PrincipalLike,
    request: Request,
    *,
    bucket: str,
    key: str,
    fields: Mapping[str, str] | None = None,
    overwrite_applies: bool = True,
) -> bool:
    """Authorize an `oss:PutObject` write (and the tagging it asks for); True when the request
    forbids replacing an existing object."""
    fields = fields if fields is not None else request.headers.as_dict()
    context = write_context(fields, overwrite_applies=overwrite_applies)
    service.authorize(
        principal, request, action="oss:PutObject", bucket=bucket, key=key, context=context
    )
    if fields.get("x-oss-tagging"):
        service.authorize(principal, request, action="oss:PutObjectTagging", bucket=bucket, key=key)
    return context.get(f"oss:{FORBID_OVERWRITE}") == "true"


def authorize_unimplemented_write(service: OssPipeline, request: Request, target: Target) -> None:
    """Refuse an unimplemented object write as OSS would when the policy denies it."""
    for (method, sub_resource), action in _UNIMPLEMENTED_WRITES.items():
        if request.method == method and sub_resource in request.query:
            principal = service.authenticate(request, target)
            bucket = service._bucket(target)
            service.authorize(principal, request, action=action, bucket=bucket, key=target.key)
