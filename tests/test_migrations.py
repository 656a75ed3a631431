"""Every model change has its migration: `makemigrations --check` inside the suite, where it
runs beside the other tests instead of as a separate process before them."""

from __future__ import annotations

from io import StringIO

from django.core.management import call_command


def test_no_model_change_is_missing_a_migration(db):
    out = StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out)
    except SystemExit as exc:  # --check exits 1 when a migration would be written
        raise AssertionError(f"Models changed without a migration:\n{out.getvalue()}") from exc
