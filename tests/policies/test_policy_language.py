"""The RAM policy language: policies/grammar.py and policies/evaluation.py."""

from __future__ import annotations

import json

import pytest

from policies.evaluation import Decision, evaluate, evaluate_all, wildcard_match
from policies.grammar import MAX_POLICY_LENGTH, PolicyError, parse_policy

BUCKET = "app-uploads"
OBJ = f"acs:oss:*:*:{BUCKET}/users/42/photo.jpg"


def policy(*statements: dict) -> dict:
    return {"Version": "1", "Statement": list(statements)}


def allow(action, resource, **extra) -> dict:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action, resource, **extra) -> dict:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


# --- wildcards ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("acs:oss:*:*:b/users/42/*", "acs:oss:*:*:b/users/42/a.jpg", True),
        # "*" crosses "/" in RAM
        ("acs:oss:*:*:b/users/42/*", "acs:oss:*:*:b/users/42/deep/er/a.jpg", True),
        ("acs:oss:*:*:b/users/42/*", "acs:oss:*:*:b/users/420/a.jpg", False),
        ("acs:oss:*:*:b/users/4?/*", "acs:oss:*:*:b/users/43/x", True),
        ("acs:oss:*:*:b/users/4?/*", "acs:oss:*:*:b/users/4/x", False),
        ("acs:oss:*:*:b/users/4?/*", "acs:oss:*:*:b/users/433/x", False),
        ("*", "anything/at:all", True),
        # regex metacharacters in patterns are literal
        ("acs:oss:*:*:b/a+b(1).txt", "acs:oss:*:*:b/a+b(1).txt", True),
        ("acs:oss:*:*:b/a.txt", "acs:oss:*:*:b/aXtxt", False),
        # case-sensitive unless asked
        ("acs:oss:*:*:b/Users/*", "acs:oss:*:*:b/users/x", False),
    ],
)
def test_wildcard_match(pattern, value, expected):
    assert wildcard_match(pattern, value) is expected


def test_action_match_is_case_insensitive_and_resource_match_is_not():
    p = policy(allow("oss:putobject", f"acs:oss:*:*:{BUCKET}/users/42/*"))
    assert evaluate(p, action="oss:PutObject", resource=OBJ, context={}).allowed
    upper = OBJ.replace("users", "USERS")
    assert not evaluate(p, action="oss:PutObject", resource=upper, context={}).allowed


def test_service_wildcard_action():
    p = policy(allow("oss:*", "acs:oss:*:*:*"))
    assert evaluate(p, action="oss:DeleteObject", resource=OBJ, context={}).allowed
    assert not evaluate(p, action="ram:CreateUser", resource=OBJ, context={}).allowed


# --- single policy -----------------------------------------------------------------------------


def test_allow_decision_names_statement():
    p = policy(
        allow("oss:GetObject", f"acs:oss:*:*:{BUCKET}/users/42/*"),
        allow(["oss:PutObject"], [f"acs:oss:*:*:{BUCKET}/users/42/*"]),
    )
    d = evaluate(p, action="oss:PutObject", resource=OBJ, context={})
    assert d == Decision(
        allowed=True,
        effect="Allow",
        policy_name=None,
        statement_index=2,
        reason=f"statement 2 allows oss:PutObject on {OBJ}",
    )


def test_implicit_deny_without_matching_statement():
    p = policy(allow("oss:GetObject", f"acs:oss:*:*:{BUCKET}/users/42/*"))
    d = evaluate(p, action="oss:PutObject", resource=OBJ, context={})
    assert d == Decision(
        allowed=False,
        effect="ImplicitDeny",
        policy_name=None,
        statement_index=None,
        reason=f"no statement allows oss:PutObject on {OBJ}",
    )


def test_explicit_deny_wins_over_earlier_and_later_allow():
    p = policy(
        allow("oss:*", "*"),
        deny("oss:DeleteObject", f"acs:oss:*:*:{BUCKET}/*"),
        allow("oss:DeleteObject", OBJ),
    )
    d = evaluate(p, action="oss:DeleteObject", resource=OBJ, context={})
    assert (d.allowed, d.effect, d.statement_index) == (False, "Deny", 2)
    assert d.reason == f"statement 2 denies oss:DeleteObject on {OBJ}"
    assert evaluate(p, action="oss:GetObject", resource=OBJ, context={}).allowed


def test_not_action_and_not_resource():
    p = policy(
        {"Effect": "Allow", "NotAction": "oss:Delete*", "Resource": "*"},
        {"Effect": "Deny", "Action": "oss:*", "NotResource": f"acs:oss:*:*:{BUCKET}/users/42/*"},
    )
    assert evaluate(p, action="oss:GetObject", resource=OBJ, context={}).allowed
    assert evaluate(p, action="oss:DeleteObject", resource=OBJ, context={}).effect == (
        "ImplicitDeny"
    )
    other = f"acs:oss:*:*:{BUCKET}/users/43/x"
    assert evaluate(p, action="oss:GetObject", resource=other, context={}).effect == "Deny"


def test_single_statement_object_is_accepted():
    p = {"Version": "1", "Statement": allow("oss:GetObject", OBJ)}
    assert evaluate(p, action="oss:GetObject", resource=OBJ, context={}).allowed


# --- conditions --------------------------------------------------------------------------------

LIST = "oss:ListObjects"
BUCKET_RES = f"acs:oss:*:*:{BUCKET}"


def list_policy(operator: str, values) -> dict:
    return policy(allow(LIST, BUCKET_RES, Condition={operator: {"oss:Prefix": values}}))


@pytest.mark.parametrize(
    ("operator", "values", "prefix", "expected"),
    [
        ("StringLike", ["users/42/*"], "users/42/", True),
        ("StringLike", ["users/42/*"], "users/42/sub/", True),
        ("StringLike", ["users/42/*"], "users/43/", False),
        ("StringLike", ["users/41/*", "users/42/*"], "users/42/x", True),  # values are OR
        ("StringLike", "users/42/*", "users/42/x", True),  # single string value
        ("StringNotLike", ["users/43/*"], "users/42/", True),
        ("StringNotLike", ["users/43/*", "users/42/*"], "users/42/", False),
        ("StringEquals", ["users/42/"], "users/42/", True),
        ("StringEquals", ["users/42/"], "USERS/42/", False),
        ("StringNotEquals", ["users/43/"], "users/42/", True),
        ("StringNotEquals", ["users/42/"], "users/42/", False),
        ("StringEqualsIgnoreCase", ["users/42/"], "USERS/42/", True),
        ("StringNotEqualsIgnoreCase", ["users/42/"], "USERS/42/", False),
    ],
)
def test_string_conditions(operator, values, prefix, expected):
    d = evaluate(
        list_policy(operator, values),
        action=LIST,
        resource=BUCKET_RES,
        context={"oss:Prefix": prefix},
    )
    assert d.allowed is expected


@pytest.mark.parametrize("operator", ["StringLike", "StringNotLike", "StringNotEquals"])
def test_missing_context_key_fails_closed(operator):
    d = evaluate(
        list_policy(operator, ["users/43/*"]),
        action=LIST,
        resource=BUCKET_RES,
        context={"oss:Delimiter": "/"},
    )
    assert d.allowed is False
    assert d.reason == (
        f"no statement allows {LIST} on {BUCKET_RES} "
        f"(statement 1 matches, but the request has no oss:Prefix for its {operator} condition)"
    )


def test_unknown_operator_fails_closed_for_allow_and_for_deny():
    p = policy(allow(LIST, BUCKET_RES, Condition={"StringSoundsLike": {"oss:Prefix": "users"}}))
    d = evaluate(p, action=LIST, resource=BUCKET_RES, context={"oss:Prefix": "users"})
    assert d.allowed is False
    assert "StringSoundsLike is not supported (fails closed)" in d.reason
    # An unknown operator on a Deny makes the Deny not apply; the Allow still needs to match.
    p2 = policy(
        allow(LIST, BUCKET_RES),
        deny(LIST, BUCKET_RES, Condition={"ForAnyValue:StringLike": {"oss:Prefix": "*"}}),
    )
    assert evaluate(p2, action=LIST, resource=BUCKET_RES, context={"oss:Prefix": "x"}).allowed


def test_all_keys_and_operators_must_hold():
    p = policy(
        allow(
            LIST,
            BUCKET_RES,
            Condition={
                "StringLike": {"oss:Prefix": "users/42/*"},
                "StringEquals": {"oss:Delimiter": "/"},
            },
        )
    )
    ok = {"oss:Prefix": "users/42/", "oss:Delimiter": "/"}
    assert evaluate(p, action=LIST, resource=BUCKET_RES, context=ok).allowed
    bad = {"oss:Prefix": "users/42/", "oss:Delimiter": ""}
    d = evaluate(p, action=LIST, resource=BUCKET_RES, context=bad)
    assert d.allowed is False
    assert "oss:Delimiter='' does not satisfy StringEquals ['/']" in d.reason


def test_condition_keys_are_case_insensitive():
    p = list_policy("StringLike", ["users/42/*"])
    assert evaluate(p, action=LIST, resource=BUCKET_RES, context={"oss:prefix": "users/42/"})


def test_numeric_bool_and_ip_conditions():
    p = policy(
        allow(
            "oss:GetObject",
            "*",
            Condition={
                "NumericLessThanEquals": {"oss:MaxKeys": 100},
                "Bool": {"acs:SecureTransport": True},
                "IpAddress": {"acs:SourceIp": ["10.0.0.0/8", "192.168.1.1"]},
            },
        )
    )
    ctx = {"oss:MaxKeys": "100", "acs:SecureTransport": "true", "acs:SourceIp": "10.1.2.3"}
    assert evaluate(p, action="oss:GetObject", resource=OBJ, context=ctx).allowed
    for key, value in [
        ("oss:MaxKeys", "101"),
        ("oss:MaxKeys", "lots"),
        ("acs:SecureTransport", "false"),
        ("acs:SourceIp", "11.0.0.1"),
        ("acs:SourceIp", "not-an-ip"),
    ]:
        assert not evaluate(
            p, action="oss:GetObject", resource=OBJ, context={**ctx, key: value}
        ).allowed, key


# --- several policies: intersection ------------------------------------------------------------

ROLE = policy(allow("oss:*", [f"acs:oss:*:*:{BUCKET}", f"acs:oss:*:*:{BUCKET}/*"]))
SESSION = policy(
    allow(["oss:GetObject", "oss:PutObject"], f"acs:oss:*:*:{BUCKET}/users/42/*"),
    allow(LIST, BUCKET_RES, Condition={"StringLike": {"oss:Prefix": "users/42/*"}}),
)


def test_intersection_allows_only_what_both_allow():
    d = evaluate_all(
        [("role", ROLE), ("session", SESSION)], action="oss:PutObject", resource=OBJ, context={}
    )
    assert d == Decision(
        allowed=True,
        effect="Allow",
        policy_name="session",
        statement_index=1,
        reason=(
            f"oss:PutObject on {OBJ} is allowed by every policy: "
            'statement 1 of "role", statement 1 of "session"'
        ),
    )
    # the role allows DeleteObject, the session policy does not
    d = evaluate_all(
        [("role", ROLE), ("session", SESSION)],
        action="oss:DeleteObject",
        resource=OBJ,
        context={},
    )
    assert (d.allowed, d.effect, d.policy_name) == (False, "ImplicitDeny", "session")
    assert d.reason == f'no statement of "session" allows oss:DeleteObject on {OBJ}'
    # the session policy cannot widen the role: another bucket stays closed
    wide = policy(allow("oss:*", "*"))
    other = "acs:oss:*:*:other-bucket/users/42/x"
    d = evaluate_all(
        [("role", ROLE), ("session", wide)], action="oss:GetObject", resource=other, context={}
    )
    assert (d.allowed, d.policy_name) == (False, "role")


def test_deny_in_any_policy_wins():
    session = policy(allow("oss:*", "*"), deny("oss:PutObject", OBJ))
    d = evaluate_all(
        [("role", ROLE), ("session", session)], action="oss:PutObject", resource=OBJ, context={}
    )
    assert d == Decision(
        allowed=False,
        effect="Deny",
        policy_name="session",
        statement_index=2,
        reason=f'statement 2 of "session" denies oss:PutObject on {OBJ}',
    )


def test_deny_wins_even_after_an_earlier_implicit_deny():
    role = policy(allow("oss:GetObject", "*"))
    session = policy(deny("oss:PutObject", "*"))
    d = evaluate_all(
        [("role", role), ("session", session)], action="oss:PutObject", resource=OBJ, context={}
    )
    assert (d.effect, d.policy_name) == ("Deny", "session")


def test_no_policies_allow_nothing():
    d = evaluate_all([], action="oss:GetObject", resource=OBJ, context={})
    assert (d.allowed, d.effect, d.policy_name) == (False, "ImplicitDeny", None)


def test_list_with_prefix_condition_through_intersection():
    pols = [("role", ROLE), ("session", SESSION)]
    assert evaluate_all(
        pols, action=LIST, resource=BUCKET_RES, context={"oss:Prefix": "users/42/"}
    ).allowed
    assert not evaluate_all(
        pols, action=LIST, resource=BUCKET_RES, context={"oss:Prefix": "users/4"}
    ).allowed
    assert not evaluate_all(pols, action=LIST, resource=BUCKET_RES, context={}).allowed


# --- grammar -----------------------------------------------------------------------------------


def test_parse_policy_returns_the_document():
    text = json.dumps(SESSION)
    assert parse_policy(text) == SESSION


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("not json", "the policy is not valid JSON"),
        ("[]", "the policy must be a JSON object."),
        ('{"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}', "Version must"),
        ('{"Version": 1, "Statement": []}', 'Version must be "1".'),
        ('{"Version": "2", "Statement": []}', 'Version must be "1".'),
        ('{"Version": "1"}', "Statement must be a non-empty list"),
        ('{"Version": "1", "Statement": []}', "Statement must be a non-empty list"),
        ('{"Version": "1", "Statement": ["x"]}', "statement 1 must be an object."),
        (
            '{"Version": "1", "Statement": [], "Id": "x"}',
            "unknown element Id.",
        ),
        (
            '{"Version": "1", "Statement": [{"Effect": "allow", "Action": "*", "Resource": "*"}]}',
            'statement 1: Effect must be "Allow" or "Deny".',
        ),
        (
            '{"Version": "1", "Statement": [{"Effect": "Allow", "Resource": "*"}]}',
            "statement 1: exactly one of Action and NotAction is required.",
        ),
        (
            '{"Version": "1", "Statement": [{"Effect": "Allow", "Action": "*", '
            '"NotAction": "*", "Resource": "*"}]}',
            "statement 1: exactly one of Action and NotAction is required.",
        ),
        (
            '{"Version": "1", "Statement": [{"Effect": "Allow", "Action": "*"}]}',
            "statement 1: exactly one of Resource and NotResource is required.",
        ),
        (
            '{"Version": "1", "Statement": [{"Effect": "Allow", "Action": [], "Resource": "*"}]}',
            "statement 1: Action must not be empty.",
        ),
        (
            '{"Version": "1", "Statement": [{"Effect": "Allow", "Action": 5, "Resource": "*"}]}',
            "statement 1: Action must be a string or a list of strings.",
        ),
        (
            '{"Version": "1", "Statement": [{"Effect": "Allow", "Action": "*", '
            '"Resource": ["x", ""]}]}',
            "statement 1: every Resource must be a non-empty string.",
        ),
        (
            '{"Version": "1", "Statement": [{"Effect": "Allow", "Action": "*", '
            '"Resource": "*", "Condtion": {}}]}',
            "statement 1: unknown element Condtion.",
        ),
        (
            '{"Version": "1", "Statement": [{"Effect": "Allow", "Action": "*", '
            '"Resource": "*", "Condition": {"StringLike": "x"}}]}',
            "statement 1: condition operator StringLike must map condition keys to values.",
        ),
        (
            '{"Version": "1", "Statement": [{"Effect": "Allow", "Action": "*", '
            '"Resource": "*", "Condition": {"StringLike": {"oss:Prefix": {"a": 1}}}}]}',
            "statement 1: condition StringLike oss:Prefix must be a string, number, boolean",
        ),
        (
            '{"Version": "1", "Statement": [{"Effect": "Allow", "Action": "*", '
            '"Resource": "*", "Condition": {"StringLike": {"oss:Prefix": []}}}]}',
            "statement 1: condition StringLike oss:Prefix must be a string, number, boolean",
        ),
    ],
)
def test_grammar_errors(text, detail):
    with pytest.raises(PolicyError) as info:
        parse_policy(text)
    assert info.value.code == "InvalidParameter.PolicyGrammar"
    assert info.value.message.startswith("The policy has a grammar error: ")
    assert detail in info.value.message


def test_size_limit_counts_the_text_as_sent():
    statement = {"Effect": "Allow", "Action": "oss:GetObject", "Resource": "*"}
    compact = json.dumps({"Version": "1", "Statement": [statement]}, separators=(",", ":"))
    padded = compact[:-1] + " " * (MAX_POLICY_LENGTH - len(compact)) + "}"
    assert len(padded) == MAX_POLICY_LENGTH
    assert parse_policy(padded)["Statement"] == [statement]
    too_long = compact[:-1] + " " * (MAX_POLICY_LENGTH + 1 - len(compact)) + "}"
    with pytest.raises(PolicyError) as info:
        parse_policy(too_long)
    assert info.value.code == "InvalidParameter.PolicySize"
    assert info.value.message == (
        "The size of the policy must be no more than 2048 characters (it has 2049)."
    )


def test_evaluate_rejects_malformed_policy_dicts():
    with pytest.raises(PolicyError) as info:
        evaluate(
            {"Version": "1", "Statement": [{"Effect": "Allow"}]},
            action="a",
            resource="r",
            context={},
        )
    assert info.value.code == "InvalidParameter.PolicyGrammar"


@pytest.mark.parametrize(
    ("operator", "limit", "now", "expected"),
    [
        ("DateLessThan", "2026-12-01T00:00:00Z", "2026-11-28T23:00:00.000Z", True),
        ("DateLessThan", "2026-12-01T00:00:00Z", "2026-12-01T00:00:00Z", False),
        ("DateLessThanEquals", "2026-12-01T00:00:00Z", "2026-12-01T00:00:00Z", True),
        ("DateGreaterThan", "2026-12-01T00:00:00Z", "2026-12-01T08:00:00+08:00", False),
        ("DateGreaterThanEquals", "2026-12-01T00:00:00Z", "2026-12-01T08:00:00+08:00", True),
        ("DateEquals", "2026-12-01T00:00:00Z", "2026-12-01T08:00:00+08:00", True),
        ("DateNotEquals", "2026-12-01T00:00:00Z", "2026-12-01T00:00:01Z", True),
        ("DateLessThan", "2026-12-01T00:00:00Z", "yesterday", False),
    ],
)
def test_date_conditions(operator, limit, now, expected):
    p = policy(allow("oss:GetObject", "*", Condition={operator: {"acs:CurrentTime": limit}}))
    d = evaluate(p, action="oss:GetObject", resource=OBJ, context={"acs:CurrentTime": now})
    assert d.allowed is expected
