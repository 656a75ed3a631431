"""The RAM policy language's grammar, as STS checks the inline session policy of AssumeRole.

What this reproduces of the real service (the `Policy` parameter): a JSON object with `Version`
"1" and `Statement` (a list, or a single object), each statement with `Effect` "Allow" or "Deny",
exactly one of `Action`/`NotAction`, exactly one of `Resource`/`NotResource` (each a string or a
non-empty list of strings) and an optional `Condition` of the form `{operator: {key:
value-or-list}}`. Violations raise `PolicyError("InvalidParameter.PolicyGrammar")`; a text longer
than 2048 characters (counted as sent, whitespace included, as STS counts the parameter it
receives) raises `PolicyError("InvalidParameter.PolicySize")`. Unknown keys are refused rather
than silently ignored: a misspelt "Condtion" would otherwise widen the grant.

The policy language is product logic: the app server validates every session policy it renders
with it, `explain_policy` evaluates with it (`policies.evaluation`), and the local emulator, a
consumer, checks AssumeRole and OSS requests with the very same code. These two modules are
therefore pure (standard library only, no Django, nothing else of the project): the emulator's
own distribution ships them (emulator/pyproject.toml).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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
    policy_statements(document)


@dataclass(frozen=True)
class Statement:
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


def policy_statements(document: Any) -> tuple[Statement, ...]:
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
            Statement(
                effect=effect,
                actions=_string_list(number, action_key, raw[action_key]),
                not_action=action_key == "NotAction",
                resources=_string_list(number, resource_key, raw[resource_key]),
                not_resource=resource_key == "NotResource",
                conditions=_conditions(number, raw["Condition"]) if "Condition" in raw else (),
            )
        )
    return tuple(statements)
