"""The migration that makes usernames unique ignoring case and look-alikes copes with accounts
that already clash: the oldest keeps its name, later ones are renamed, nothing is deleted."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

CYRILLIC = "d\u0435mo"
FULLWIDTH_ADMIN = "\uff41dmin"
BEFORE = [("accounts", "0002_credentials_epoch")]
AFTER = [("accounts", "0003_unique_usernames_and_login_sessions")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_clashing_accounts_are_renamed_oldest_first(capsys):
    apps = _migrate(BEFORE)
    try:
        User = apps.get_model("accounts", "User")
        made = {}
        for day, name in enumerate(["Demo", "demo", CYRILLIC, FULLWIDTH_ADMIN, "other"], 1):
            made[name] = User.objects.create(
                username=name,
                public_id=f"{day:032x}",
                date_joined=datetime(2026, 1, day, tzinfo=UTC),
            ).pk

        apps = _migrate(AFTER)
        User = apps.get_model("accounts", "User")
        names = dict(User.objects.values_list("pk", "username"))
        assert names == {
            made["Demo"]: "Demo",  # the oldest keeps it
            made["demo"]: f"demo-{made['demo']}",
            made[CYRILLIC]: f"{CYRILLIC}-{made[CYRILLIC]}",
            made[FULLWIDTH_ADMIN]: "admin",  # NFKC
            made["other"]: "other",
        }
        assert User.objects.filter(username_skeleton="").count() == 0
        out = capsys.readouterr().out
        assert f"Renamed user {made['demo']} from 'demo' to 'demo-{made['demo']}'" in out
    finally:
        # Back to the newest schema (later migrations too), for the tests that follow.
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
