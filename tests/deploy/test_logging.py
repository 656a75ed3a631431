"""Production logs: one JSON object per line, each with the request id, from Django and from
gunicorn alike, and never a query string (signed URLs and tokens travel there)."""

from __future__ import annotations

import io
import json
import logging

import pytest
from gunicorn.glogging import SafeAtoms

from appserver.logging import GunicornJsonFormatter, JsonFormatter, RequestIdFilter


@pytest.fixture
def json_lines():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)


@pytest.mark.django_db
def test_django_request_lines_carry_the_request_id_and_no_query_string(client, json_lines):
    response = client.get(
        "/no-such-page/?signature=SECRET&security-token=SECRET", HTTP_X_REQUEST_ID="req-12345678"
    )

    assert response.status_code == 404
    assert response["X-Request-ID"] == "req-12345678"
    [line] = json_lines()
    assert line["request_id"] == "req-12345678"
    assert line["logger"] == "django.request"
    assert line["request"] == "GET /no-such-page/"
    assert line["status_code"] == 404
    assert "SECRET" not in json.dumps(line)


def test_gunicorn_access_lines_are_json_built_from_its_atoms():
    atoms = SafeAtoms(
        {
            "h": "10.0.0.7",
            "m": "GET",
            "U": "/api/uploads/",
            "q": "signature=SECRET",
            "s": "200",
            "B": 512,
            "M": 12,
            "a": 'okhttp/4.12 "quoted"',
            "{x-request-id}o": "abcdef123456",
        }
    )
    record = logging.LogRecord(
        "gunicorn.access", logging.INFO, __file__, 1, "%(h)s %(r)s", (atoms,), None
    )

    line = json.loads(GunicornJsonFormatter().format(record))

    assert line.pop("time")
    assert line == {
        "level": "INFO",
        "logger": "gunicorn.access",
        "request_id": "abcdef123456",
        "message": "GET /api/uploads/ 200",
        "method": "GET",
        "path": "/api/uploads/",
        "status": 200,
        "bytes": 512,
        "duration_ms": 12,
        "remote_addr": "10.0.0.7",
        "user_agent": 'okhttp/4.12 "quoted"',
    }


def test_gunicorn_error_lines_are_json_too():
    record = logging.LogRecord(
        "gunicorn.error", logging.INFO, __file__, 1, "Booting worker with pid: %s", (42,), None
    )

    line = json.loads(GunicornJsonFormatter().format(record))

    assert (line["logger"], line["message"], line["request_id"]) == (
        "gunicorn.error",
        "Booting worker with pid: 42",
        "-",
    )
