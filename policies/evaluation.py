"""Evaluation of RAM policies for OSS requests, as RAM decides them.

- An explicit Deny wins over any Allow; with no matching statement the answer is an implicit
  deny. Several policies that all apply to one principal (the role's own policy and the session
  policy) intersect: every one of them must allow, and a Deny in any of them denies.
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

Pure like `policies.grammar` (see there why).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from policies.grammar import Statement, policy_statements


@dataclass(frozen=True)
class Decision:
    allowed: bool
    effect: str  # "Allow" | "Deny" | "ImplicitDeny"
    policy_name: str | None  # which policy decided (None for a bare evaluate())
    statement_index: int | None  # 1-based, as in `reason`; None for an implicit deny
    reason: str


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


def _condition_failure(statement: Statement, context: Mapping[str, str]) -> str | None:
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
    statements = policy_statements(policy)
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
    statements: tuple[Statement, ...],
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
