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
from schemathesis.core.control import SkipTest
from schemathesis.core.failures import FailureGroup, as_reported_failure
from schemathesis.core.result import Err
from schemathesis.generation.hypothesis.reporting import ignore_hypothesis_output
from schemathesis.pytest.lazy import get_all_tests
from schemathesis.specs.openapi.checks import positive_data_acceptance

from accounts.services import session_start

pytestmark = [pytest.mark.slow(4)]

# About 15 cases for each of the ~24 operations: a few hundred requests, bounded for CI.
EXAMPLES_PER_OPERATION = 15


# The schema /api/schema/ serves (drf-spectacular's generator, as its view runs it); requests
# go to the live server.
DOCUMENT = json.loads(
    json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str)
)
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace", "query")
# Its operations, named as schemathesis names them: one test each.
OPERATIONS = [
    f"{method.upper()} {path}"
    for path, item in DOCUMENT["paths"].items()
    for method in item
    if method in _METHODS
]


@pytest.fixture(scope="session")
def api_schema():
    schema = schemathesis.openapi.from_dict(DOCUMENT)
    # The tests are the operations schemathesis finds in the schema, no more and no fewer.
    assert [result.ok().label for result in schema.get_all_operations()] == OPERATIONS
    return schema


def _each_operation_built_when_run(test):
    """`schema.parametrize()`, except that an operation's cases are built when its test runs.

    `schema.parametrize()` builds every operation's cases (its coverage phase above all) as
    pytest collects the module, and every pytest-xdist worker collects it, also the ones that
    run none of these tests: 2.7 of the 5.2 s of CPU a worker took to start and collect. Here
    collection only names the operations, with the ids `schema.parametrize()` gives them, and
    each test builds its own operation's cases as `schema.parametrize()` does (schemathesis's
    `get_all_tests`: all phases, these settings, the same derandomized cases; checked, the
    module run alone: the same 1634 requests in the same order) and runs them, its failures
    reported as schemathesis reports them.

    Not schemathesis's lazy schema (`schemathesis.pytest.from_fixture`): it runs all operations
    in one test, so in one worker, and in 4.32 fails on pytest 9.2 (it reads the item's
    `_nodeid`, which pytest no longer has)."""

    @pytest.mark.parametrize("operation", OPERATIONS)
    def run(operation, api_schema, live_server, staff_token):
        __tracebackhide__ = True
        schema = api_schema.include(name=operation)
        # Built together, a path's operations probe it with each method it does not declare
        # once, in the first of them: the others leave those cases out, here as well.
        path = operation.split(" ", 1)[1]
        if any(
            label.split(" ", 1)[1] == path for label in OPERATIONS[: OPERATIONS.index(operation)]
        ):
            schema.coverage_unexpected_methods_seen.update((path, method) for method in _METHODS)
        [built] = get_all_tests(
            schema=schema,
            test_func=test,
            settings=None,
            given_kwargs={},
        )
        if isinstance(built, Err):
            raise built.err()
        _, operation_test = built.ok()
        try:
            with ignore_hypothesis_output():
                operation_test(live_server=live_server, staff_token=staff_token)
        except FailureGroup as exc:
            raise as_reported_failure(exc) from None
        except SkipTest as exc:
            pytest.skip(str(exc))

    return run


@pytest.fixture
def staff_token(transactional_db, staff_user, alibaba) -> str:
    return session_start(user=staff_user)["access"]


@_each_operation_built_when_run
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
