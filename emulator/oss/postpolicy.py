"""PostObject policies, as OSS documents them (PostObject, its "Appendix: Policy", and the POST
V1 and V4 signature pages).

A policy is base64 of UTF-8 JSON with exactly two members: `expiration` (ISO 8601, GMT) and
`conditions`, a list of

- ``{"field": "value"}``: the field equals the value (the usual way to fix ``bucket``);
- ``["eq", "$field", "value"]`` and ``["starts-with", "$field", "prefix"]``;
- ``["in", "$field", [values]]`` and ``["not-in", "$field", [values]]``;
- ``["content-length-range", min, max]``: the file's size in bytes, integers, 0 <= min <= max.

Field names compare case-insensitively (``$Content-Type``, ``$key``, ``$x-oss-meta-*``,
``$callback``, ``$x:var``, ``$success_action_status``, ``$bucket``...), values exactly; a field
the form does not carry is the empty string. A malformed policy is 400 InvalidPolicyDocument;
an unmet condition is 403 AccessDenied "Invalid according to Policy: Policy Condition failed:
<the condition>", an expired policy "Invalid according to Policy: Policy expired.". A V4 form's
policy must also fix x-oss-signature-version, x-oss-credential and x-oss-date to the form's own
values. PostObject stores at most 5 GB, whatever the range says.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from emulator.oss.errors import OssError, access_denied

MAX_POST_SIZE = 5 * 1024**3
V4_POLICY_FIELDS = ("x-oss-signature-version", "x-oss-credential", "x-oss-date")
_OPERATORS = ("eq", "starts-with", "in", "not-in", "content-length-range")


def invalid_policy(message: str) -> OssError:
    return OssError(400, "InvalidPolicyDocument", message)


def policy_failed(detail: str) -> OssError:
    return access_denied(f"Invalid according to Policy: {detail}")


@dataclass(frozen=True)
class Policy:
    expires_at: float
    conditions: tuple[Any, ...]
    length_range: tuple[int, int]

    def fixed(self, name: str) -> list[str]:
        """The values exact-match conditions require of field `name` (lower-case)."""
        values = []
        for condition in self.conditions:
            if isinstance(condition, dict):
                values += [str(v) for k, v in condition.items() if k.lower() == name]
            elif condition[0].lower() == "eq" and condition[1].lstrip("$").lower() == name:
                values.append(str(condition[2]))
        return values


def _expiration(text: Any) -> float:
    if not isinstance(text, str):
        raise invalid_policy("The policy must contain an expiration (ISO 8601, GMT).")
    for pattern in ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S"):
        try:
            moment = datetime.strptime(text.removesuffix("Z"), pattern)
        except ValueError:
            continue
        return moment.replace(tzinfo=UTC).timestamp()
    raise invalid_policy(f"Invalid policy expiration: {text!r}.")


def _condition(condition: Any) -> Any:
    text = json.dumps(condition)
    if isinstance(condition, dict):
        if len(condition) != 1 or not all(isinstance(v, str) for v in condition.values()):
            raise invalid_policy(f"Invalid policy condition: {text}")
        return condition
    if not isinstance(condition, list) or len(condition) != 3:
        raise invalid_policy(f"Invalid policy condition: {text}")
    operator = condition[0].lower() if isinstance(condition[0], str) else ""
    if operator not in _OPERATORS:
        raise invalid_policy(f"Unknown policy condition: {text}")
    if operator == "content-length-range":
        low, high = condition[1], condition[2]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)):
            raise invalid_policy(f"Invalid content-length-range: {text}")
        if low < 0 or high < low:
            raise invalid_policy(f"Invalid content-length-range: {text}")
        return condition
    if not isinstance(condition[1], str) or not condition[1].startswith("$"):
        raise invalid_policy(f"Invalid policy condition: {text}")
    if operator in ("in", "not-in"):
        if not isinstance(condition[2], list) or not all(isinstance(v, str) for v in condition[2]):
            raise invalid_policy(f"Invalid policy condition: {text}")
    elif not isinstance(condition[2], str):
        raise invalid_policy(f"Invalid policy condition: {text}")
    return condition


def decode_policy(policy_b64: str) -> Policy:
    """Parse and validate a policy field; raises InvalidPolicyDocument."""
    try:
        document = json.loads(base64.b64decode(policy_b64, validate=True).decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid_policy("The policy is not base64-encoded UTF-8 JSON.") from None
    if not isinstance(document, dict):
        raise invalid_policy("The policy is not a JSON object.")
    extra = set(document) - {"expiration", "conditions"}
    if extra:
        raise invalid_policy(f"Unsupported policy member {sorted(extra)[0]!r}.")
    expires_at = _expiration(document.get("expiration"))
    conditions = document.get("conditions")
    if not isinstance(conditions, list):
        raise invalid_policy("The policy must contain a list of conditions.")
    checked = tuple(_condition(condition) for condition in conditions)
    low, high = 0, MAX_POST_SIZE
    for condition in checked:
        if isinstance(condition, list) and condition[0].lower() == "content-length-range":
            low, high = max(low, condition[1]), min(high, condition[2])
    return Policy(expires_at=expires_at, conditions=checked, length_range=(low, high))


def check_policy(policy: Policy, fields: dict[str, str], *, bucket: str, now: float) -> None:
    """Enforce expiry and every field condition (the length range is checked on the file)."""
    if policy.expires_at < now:
        raise policy_failed("Policy expired.")
    values = {name.lower(): value for name, value in fields.items()}
    values["bucket"] = bucket

    def value(name: str) -> str:
        return values.get(name.lstrip("$").lower(), "")

    for condition in policy.conditions:
        failed = f"Policy Condition failed: {json.dumps(condition)}"
        if isinstance(condition, dict):
            if any(value(name) != expected for name, expected in condition.items()):
                raise policy_failed(failed)
            continue
        operator, name, expected = condition[0].lower(), condition[1], condition[2]
        if operator == "content-length-range":
            continue
        actual = value(name)
        if operator == "eq":
            met = actual == expected
        elif operator == "starts-with":
            met = actual.startswith(expected)
        elif operator == "in":
            met = actual in expected
        else:  # not-in
            met = actual not in expected
        if not met:
            raise policy_failed(failed)


def check_v4_policy_fields(policy: Policy, fields: dict[str, str]) -> None:
    """A V4 policy fixes the signature version, credential and date the form carries."""
    values = {name.lower(): value for name, value in fields.items()}
    for name in V4_POLICY_FIELDS:
        fixed = policy.fixed(name)
        if not fixed:
            raise invalid_policy(f"A V4 policy must contain the condition {name}.")
        if any(value != values.get(name, "") for value in fixed):
            raise policy_failed(f"Policy Condition failed: {name}")
