"""The RAM policy language, as Alibaba Cloud RAM parses and evaluates it for OSS requests.

What this reproduces of the real service:

- Grammar checks that STS applies to the inline session policy of AssumeRole (the `Policy`
  parameter): JSON object with `Version` "1" and `Statement` (a list, or a single object), each
  statement with `Effect` "Allow" or "Deny", exactly one of `Action`/`NotAction`, exactly one of
  `Resource`/`NotResource` (each a string or a non-empty list of strings) and an optional
  `Condition` of the form `{operator: {key: value-or-list}}`. Violations raise
  `PolicyError("InvalidParameter.PolicyGrammar")`; a text longer than 2048 characters (counted
  as sent, whitespace included, as STS counts the parameter it receives) raises
  `PolicyError("InvalidParameter.PolicySize")`. Unknown keys are refused rather than silently
  ignored: a misspelt "Condtion" would otherwise widen the grant.
- Evaluation: an explicit Deny wins over any Allow; with no matching statement the answer is an
  implicit deny. Several policies that all apply to one principal (the role's own policy and the
  session policy) intersect: every one of them must allow, and a Deny in any of them denies.
- Matching: `*` matches any run of characters, `/` included; `?` matches exactly one character.
  Actions compare case-insensitively (`oss:putobject` equals `oss:PutObject`), resources
  case-sensitively (object keys are case-sensitive in OSS).
- Conditions: all operators of a statement and all keys of an operator must hold (AND); the values
  listed for one key are alternatives (OR); for the negated operators (`StringNotEquals`,
  `StringNotLike`, ...) the context value must match none of them. A key missing from the request
  context makes its condition fail, negated operators included, and an operator this module does
  not know fails too: a statement is never applied on a guess (fail closed). Condition keys are
  looked up case-insensitively, as RAM does. Supported: StringEquals, StringNotEquals,
  StringEqualsIgnoreCase, StringNotEqualsIgnoreCase, StringLike, StringNotLike, NumericEquals,
  NumericNotEquals, NumericLessThan(Equals), NumericGreaterThan(Equals), DateEquals,
  DateNotEquals, DateLessThan(Equals), DateGreaterThan(Equals) (ISO 8601, e.g. against
  `acs:CurrentTime`), Bool, IpAddress, NotIpAddress. Values that do not parse as the operator's
  type make the condition fail.

This module is pure (no I/O, no Django) so that both the emulator and the app server's
`explain_policy` command use the very same evaluation.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

MAX_POLICY_LENGTH = 2048

GRAMMAR_ERROR = "InvalidParameter.PolicyGrammar"
SIZE_ERROR = "InvalidParameter.PolicySize"

_TOP_LEVEL_KEYS = frozenset({"Version", "Statement"})
_STATEMENT_KEYS = frozenset(
    {"Effect", "Action", "NotAction", "Resource", "NotResource", "Condition", "Principal"}
)


class PolicyError(Exception):
    """A policy text that STS would refuse, with the STS error code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Decision:
    allowed: bool
    effect: str  # "Allow" | "Deny" | "ImplicitDeny"
    policy_name: str | None  # which policy decided (None for a bare evaluate())
    statement_index: int | None  # 1-based, as in `reason`; None for an implicit deny
    reason: str


# --- grammar -----------------------------------------------------------------------------------


def _grammar(detail: str) -> PolicyError:
    return PolicyError(GRAMMAR_ERROR, f"The policy has a grammar error: {detail}")


def parse_policy(text: str) -> dict:
    """Parse and validate a policy document as STS does for AssumeRole's `Policy` parameter.

    Returns the decoded JSON object unchanged; raises PolicyError.
    """
    if not isinstance(text, str):
        raise _grammar("the policy must be a JSON text.")
    if len(text) > MAX_POLICY_LENGTH:
        raise PolicyError(
            SIZE_ERROR,
            f"The size of the policy must be no more than {MAX_POLICY_LENGTH} characters "
            f"(it has {len(text)}).",
        )
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _grammar(f"the policy is not valid JSON ({exc}).") from None
    validate_policy(document)
    return document


def validate_policy(document: Any) -> None:
    """Check the structure of an already decoded policy; raises PolicyError."""
    _normalize(document)


@dataclass(frozen=True)
class _Statement:
    effect: str
    actions: tuple[str, ...]
    not_action: bool
    resources: tuple[str, ...]
    not_resource: bool
    conditions: tuple[tuple[str, tuple[tuple[str, tuple[str, ...]], ...]], ...]


def _string_list(statement_no: int, name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        values: list[Any] = [value]
    elif isinstance(value, list):
        values = value
    else:
        raise _grammar(f"statement {statement_no}: {name} must be a string or a list of strings.")
    if not values:
        raise _grammar(f"statement {statement_no}: {name} must not be empty.")
    for item in values:
        if not isinstance(item, str) or not item:
            raise _grammar(f"statement {statement_no}: every {name} must be a non-empty string.")
    return tuple(values)


def _condition_value(value: Any) -> str:
    # RAM accepts JSON booleans and numbers in conditions (Bool, Numeric*); compare as text.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _conditions(statement_no: int, block: Any) -> tuple:
    if not isinstance(block, dict):
        raise _grammar(f"statement {statement_no}: Condition must be an object.")
    out = []
    for operator, keys in block.items():
        if not isinstance(keys, dict) or not keys:
            raise _grammar(
                f"statement {statement_no}: condition operator {operator} must map condition "
                "keys to values."
            )
        pairs = []
        for key, raw in keys.items():
            values = raw if isinstance(raw, list) else [raw]
            if not values or not all(isinstance(v, str | int | float) for v in values):
                raise _grammar(
                    f"statement {statement_no}: condition {operator} {key} must be a string, "
                    "number, boolean or a non-empty list of them."
                )
            pairs.append((key, tuple(_condition_value(v) for v in values)))
        out.append((operator, tuple(pairs)))
    return tuple(out)


def _normalize(document: Any) -> tuple[_Statement, ...]:
    if not isinstance(document, dict):
        raise _grammar("the policy must be a JSON object.")
    unknown = sorted(set(document) - _TOP_LEVEL_KEYS)
    if unknown:
        raise _grammar(f"unknown element {unknown[0]}.")
    if document.get("Version") != "1":
        raise _grammar('Version must be "1".')
    raw_statements = document.get("Statement")
    if isinstance(raw_statements, dict):
        raw_statements = [raw_statements]
    if not isinstance(raw_statements, list) or not raw_statements:
        raise _grammar("Statement must be a non-empty list of statements.")
    statements = []
    for number, raw in enumerate(raw_statements, start=1):
        if not isinstance(raw, dict):
            raise _grammar(f"statement {number} must be an object.")
        unknown = sorted(set(raw) - _STATEMENT_KEYS)
        if unknown:
            raise _grammar(f"statement {number}: unknown element {unknown[0]}.")
        effect = raw.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise _grammar(f'statement {number}: Effect must be "Allow" or "Deny".')
        if ("Action" in raw) == ("NotAction" in raw):
            raise _grammar(f"statement {number}: exactly one of Action and NotAction is required.")
        if ("Resource" in raw) == ("NotResource" in raw):
            raise _grammar(
                f"statement {number}: exactly one of Resource and NotResource is required."
            )
        action_key = "Action" if "Action" in raw else "NotAction"
        resource_key = "Resource" if "Resource" in raw else "NotResource"
        statements.append(
            _Statement(
                effect=effect,
                actions=_string_list(number, action_key, raw[action_key]),
                not_action=action_key == "NotAction",
                resources=_string_list(number, resource_key, raw[resource_key]),
                not_resource=resource_key == "NotResource",
                conditions=_conditions(number, raw["Condition"]) if "Condition" in raw else (),
            )
        )
    return tuple(statements)


# --- matching ----------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _pattern(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    parts = []
    for char in pattern:
        if char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.compile("".join(parts), flags)


def wildcard_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """RAM wildcard match: `*` any run (including "/"), `?` exactly one character."""
    return _pattern(pattern, ignore_case).fullmatch(value) is not None


def _any_match(patterns: tuple[str, ...], value: str, *, ignore_case: bool) -> bool:
    return any(wildcard_match(p, value, ignore_case=ignore_case) for p in patterns)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _numeric(compare: Callable[[float, float], bool]) -> Callable[[str, str], bool]:
    def test(actual: str, expected: str) -> bool:
        a, b = _number(actual), _number(expected)
        return a is not None and b is not None and compare(a, b)

    return test


def _instant(text: str) -> float | None:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _dated(compare: Callable[[float, float], bool]) -> Callable[[str, str], bool]:
    def test(actual: str, expected: str) -> bool:
        a, b = _instant(actual), _instant(expected)
        return a is not None and b is not None and compare(a, b)

    return test


def _ip_in(actual: str, expected: str) -> bool:
    try:
        return ipaddress.ip_address(actual) in ipaddress.ip_network(expected, strict=False)
    except ValueError:
        return False


# operator -> (test(actual, expected), negated). Negated operators hold when no value matches.
_OPERATORS: dict[str, tuple[Callable[[str, str], bool], bool]] = {
    "StringEquals": (lambda a, e: a == e, False),
    "StringNotEquals": (lambda a, e: a == e, True),
    "StringEqualsIgnoreCase": (lambda a, e: a.lower() == e.lower(), False),
    "StringNotEqualsIgnoreCase": (lambda a, e: a.lower() == e.lower(), True),
    "StringLike": (lambda a, e: wildcard_match(e, a), False),
    "StringNotLike": (lambda a, e: wildcard_match(e, a), True),
    "NumericEquals": (_numeric(lambda a, e: a == e), False),
    "NumericNotEquals": (_numeric(lambda a, e: a == e), True),
    "NumericLessThan": (_numeric(lambda a, e: a < e), False),
    "NumericLessThanEquals": (_numeric(lambda a, e: a <= e), False),
    "NumericGreaterThan": (_numeric(lambda a, e: a > e), False),
    "NumericGreaterThanEquals": (_numeric(lambda a, e: a >= e), False),
    "DateEquals": (_dated(lambda a, e: a == e), False),
    "DateNotEquals": (_dated(lambda a, e: a == e), True),
    "DateLessThan": (_dated(lambda a, e: a < e), False),
    "DateLessThanEquals": (_dated(lambda a, e: a <= e), False),
    "DateGreaterThan": (_dated(lambda a, e: a > e), False),
    "DateGreaterThanEquals": (_dated(lambda a, e: a >= e), False),
    "Bool": (lambda a, e: a.lower() == e.lower(), False),
    "IpAddress": (_ip_in, False),
    "NotIpAddress": (_ip_in, True),
}


def _lookup(context: Mapping[str, str], key: str) -> str | None:
    if key in context:
        return context[key]
    lowered = key.lower()
    for name, value in context.items():
        if name.lower() == lowered:
            return value
    return None


def _condition_failure(statement: _Statement, context: Mapping[str, str]) -> str | None:
    """None when every condition holds, else why the statement does not apply."""
    for operator, pairs in statement.conditions:
        known = _OPERATORS.get(operator)
        if known is None:
            return f"its condition operator {operator} is not supported (fails closed)"
        test, negated = known
        for key, expected in pairs:
            actual = _lookup(context, key)
            if actual is None:
                return f"the request has no {key} for its {operator} condition"
            matched = any(test(actual, value) for value in expected)
            if matched == negated:
                return f"{key}={actual!r} does not satisfy {operator} {list(expected)}"
    return None


# --- evaluation --------------------------------------------------------------------------------


def _label(policy_name: str | None) -> str:
    return f' of "{policy_name}"' if policy_name is not None else ""


def _evaluate_one(
    policy_name: str | None,
    policy: dict,
    *,
    action: str,
    resource: str,
    context: Mapping[str, str],
) -> Decision:
    statements = _normalize(policy)
    allow: Decision | None = None
    for index, statement in enumerate(statements, start=1):
        action_hit = _any_match(statement.actions, action, ignore_case=True)
        if action_hit == statement.not_action:
            continue
        resource_hit = _any_match(statement.resources, resource, ignore_case=False)
        if resource_hit == statement.not_resource:
            continue
        if _condition_failure(statement, context) is not None:
            continue
        if statement.effect == "Deny":
            # An explicit Deny decides at once, whatever else matches.
            return Decision(
                allowed=False,
                effect="Deny",
                policy_name=policy_name,
                statement_index=index,
                reason=f"statement {index}{_label(policy_name)} denies {action} on {resource}",
            )
        if allow is None:
            allow = Decision(
                allowed=True,
                effect="Allow",
                policy_name=policy_name,
                statement_index=index,
                reason=f"statement {index}{_label(policy_name)} allows {action} on {resource}",
            )
    if allow is not None:
        return allow
    return Decision(
        allowed=False,
        effect="ImplicitDeny",
        policy_name=policy_name,
        statement_index=None,
        reason=_implicit_reason(policy_name, statements, action, resource, context),
    )


def _implicit_reason(
    policy_name: str | None,
    statements: tuple[_Statement, ...],
    action: str,
    resource: str,
    context: Mapping[str, str],
) -> str:
    base = f"no statement{_label(policy_name)} allows {action} on {resource}"
    # Name the first Allow statement that matched action and resource but not its conditions:
    # that is usually the one the reader expected to apply.
    for index, statement in enumerate(statements, start=1):
        if statement.effect != "Allow":
            continue
        if _any_match(statement.actions, action, ignore_case=True) == statement.not_action:
            continue
        if _any_match(statement.resources, resource, ignore_case=False) == statement.not_resource:
            continue
        failure = _condition_failure(statement, context)
        if failure is not None:
            return f"{base} (statement {index} matches, but {failure})"
    return base


def evaluate(policy: dict, *, action: str, resource: str, context: Mapping[str, str]) -> Decision:
    """Evaluate one policy for one request. Raises PolicyError if the policy is malformed."""
    return _evaluate_one(None, policy, action=action, resource=resource, context=context)


def evaluate_all(
    policies: Sequence[tuple[str, dict]],
    *,
    action: str,
    resource: str,
    context: Mapping[str, str],
) -> Decision:
    """Evaluate the intersection of named policies: each must allow; any explicit Deny wins.

    With no policies at all nothing is allowed.
    """
    decisions = [
        _evaluate_one(name, policy, action=action, resource=resource, context=context)
        for name, policy in policies
    ]
    for decision in decisions:
        if decision.effect == "Deny":
            return decision
    for decision in decisions:
        if not decision.allowed:
            return decision
    if not decisions:
        return Decision(
            allowed=False,
            effect="ImplicitDeny",
            policy_name=None,
            statement_index=None,
            reason=f"no policy applies, so {action} on {resource} is not allowed",
        )
    last = decisions[-1]
    if len(decisions) == 1:
        return last
    granted_by = ", ".join(f'statement {d.statement_index} of "{d.policy_name}"' for d in decisions)
    return Decision(
        allowed=True,
        effect="Allow",
        policy_name=last.policy_name,
        statement_index=last.statement_index,
        reason=f"{action} on {resource} is allowed by every policy: {granted_by}",
    )
