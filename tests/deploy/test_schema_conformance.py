"""The published schema matches the API: schemathesis generates requests from /api/schema/ and
sends them over real HTTP to the live app (PostgreSQL, Redis, the STS + OSS emulator), as a
staff user with a real login session's access token, so protected endpoints are exercised past
authentication. All of schemathesis's checks run: no 5xx, every status, header and body as
documented, schema-invalid input refused with a 4xx, authentication not ignored.

The OSS upload callback is not in the schema and so not exercised: OSS authenticates it with an
RSA signature over the request, which generated requests cannot carry (its own tests forge and
replay it: tests/uploads/test_callback_signature.py, test_callback_abuse.py)."""

from __future__ import annotations

import json

import pytest
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from accounts.services import session_start

pytestmark = [pytest.mark.slow(4)]

# About 15 cases for each of the ~24 operations: a few hundred requests, bounded for CI.
EXAMPLES_PER_OPERATION = 15


# The schema /api/schema/ serves (drf-spectacular's generator, as its view runs it); requests
# go to the live server.
schema = schemathesis.openapi.from_dict(
    json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str))
)


@pytest.fixture
def staff_token(transactional_db, staff_user, alibaba) -> str:
    return session_start(user=staff_user)["access"]


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    # The same cases on every run: a CI result that depends on a random draw is no verdict.
    # To explore further, drop this locally and raise EXAMPLES_PER_OPERATION.
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented(case, live_server, staff_token):
    # schemathesis generates the bearer token the schema requires, and leaves it out of the
    # cases that test authentication: a real one replaces the generated one, never adds one.
    if case.headers and "Authorization" in case.headers:
        case.headers["Authorization"] = f"Bearer {staff_token}"
    response = case.call(base_url=live_server.url)
    excluded = []
    if response.status_code == 400 and _breaks_a_rule_no_schema_states(response.json()):
        excluded = [positive_data_acceptance]
    case.validate_response(response, excluded_checks=excluded)


# The documented 400s for schema-valid input that breaks a rule OpenAPI cannot state: the
# upload policy (allowed types, size limit, both settings), an identity provider that is not
# configured (a setting), a report's `user` filter naming no existing user, a date range that
# ends before it starts, metadata key names (drf-spectacular cannot emit propertyNames) and a
# file name left with nothing visible once whitespace, control and bidi characters are removed
# (DRF trims whitespace before its blank check, which no schema keyword says). Anything
# else schema-valid that is refused fails the test, also beside one of these.
_RULE_CODES = {"content_type_not_allowed", "file_too_large", "unknown_provider"}
_RULE_FIELDS = {
    "user": [["No user has this username or public id."]],
    "to": [["Must not be before 'from'."]],
    "metadata": [["Keys: 1-64 letters, digits, '_', '.' or '-'."]],
    "filename": [
        ["A file name with at least one visible character."],
        ["This field may not be blank."],
    ],
}


def _breaks_a_rule_no_schema_states(body: dict) -> bool:
    error = body.get("error", {})
    if error.get("code") in _RULE_CODES:
        return True
    fields = error.get("fields") or {}
    known = _RULE_FIELDS
    return bool(fields) and all(errors in known.get(name, []) for name, errors in fields.items())
