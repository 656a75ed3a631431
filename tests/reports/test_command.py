"""`manage.py report` output formats, exactly."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("report", *args, stdout=out)
    return out.getvalue()


def test_table(known):
    assert run("uploads-monthly") == (
        "period      uploads  bytes\n"
        "----------  -------  ------\n"
        "2026-03-01        5  54,000\n"
        "2026-04-01        2   4,100\n"
    )


def test_table_without_rows(known):
    assert run("refusals", "--from", "2030-01-01") == (
        "reason  label  refusals\n------  -----  --------\n(no rows)\n"
    )


def test_csv(known):
    text = run("usage", "--format", "csv", "--content-type", "image/*")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [
        ["user_id", "username", "public_id", "objects", "bytes", "last_upload_at"],
        [
            str(known.alice.pk),
            "alice",
            known.alice.public_id,
            "2",
            "3000",
            "2026-03-02T23:59:59+00:00",
        ],
        [str(known.bob.pk), "bob", known.bob.public_id, "2", "400", "2026-04-15T18:30:00+00:00"],
    ]


def test_json(known):
    data = json.loads(run("credentials-daily", "--format", "json", "--user", "alice"))
    assert data == {
        "report": "credentials-daily",
        "columns": ["day", "grants", "users"],
        "rows": [
            {"day": "2026-03-02", "grants": 2, "users": 1},
            {"day": "2026-03-04", "grants": 1, "users": 1},
        ],
    }


def test_bad_date_is_a_command_error(known):
    with pytest.raises(CommandError, match="--from: Date has wrong format"):
        run("usage", "--from", "03/02/2026")


def test_inapplicable_filter_is_a_command_error(known):
    with pytest.raises(CommandError, match="--content-type: Does not apply"):
        run("credentials-daily", "--content-type", "image/png")
