"""manage.py explain_policy, through call_command, and its exit status through manage.py."""

from __future__ import annotations

import io
import json

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection

from policies.services import policy_for_user
from tests.processes import database_url, run_manage

pytestmark = pytest.mark.django_db


def explain(*args: str, denied: bool = False) -> str:
    """The command's output; `denied`: it must end with a denial (exit status 1)."""
    out = io.StringIO()
    if not denied:
        call_command("explain_policy", *args, stdout=out)
        return out.getvalue()
    with pytest.raises(CommandError) as caught:
        call_command("explain_policy", *args, stdout=out)
    assert caught.value.returncode == 1
    assert str(caught.value).startswith("Denied: ")
    return out.getvalue()


def test_prints_the_rendered_policy(user, settings):
    output = explain("--user", user.username, "--scope", "write")
    lines = output.splitlines()
    assert lines[0] == (
        f"Session policy for user {user.username} (public id {user.public_id}), scope write: "
        f"prefix users/{user.public_id}/ in bucket {settings.OSS_BUCKET}; 794 characters minified "
        "(STS limit 2048)."
    )
    rendered = json.loads("\n".join(lines[1:]))
    assert rendered == policy_for_user(user=user, scope="write").document
    assert rendered["Statement"][0] == {
        "Effect": "Allow",
        "Action": ["oss:PutObject", "oss:ListParts", "oss:AbortMultipartUpload"],
        "Resource": [f"acs:oss:*:*:{settings.OSS_BUCKET}/users/{user.public_id}/*"],
    }


def test_allowed_names_the_deciding_statement(user, settings):
    key = f"users/{user.public_id}/photo.jpg"
    output = explain(
        "--user", user.public_id, "--scope", "readwrite", "--action", "oss:PutObject", "--key", key,
        "--header", "x-oss-forbid-overwrite=true",
    )  # fmt: skip
    resource = f"acs:oss:*:*:{settings.OSS_BUCKET}/{key}"
    tail = output.splitlines()[-4:]
    assert tail[0] == (
        "Evaluated against the session policy alone (the role's own policy in RAM can only "
        "narrow this further)."
    )
    assert tail[1] == (
        f"ALLOWED: oss:PutObject on {resource} with oss:x-oss-forbid-overwrite='true'"
    )
    assert tail[2].startswith('Decided by statement 1 (Allow): {"Effect":"Allow","Action":[')
    assert tail[3] == f'Reason: statement 1 of "session policy" allows oss:PutObject on {resource}'


def test_an_upload_that_could_replace_an_object_is_denied(user, settings):
    key = f"users/{user.public_id}/photo.jpg"
    output = explain(
        "--user", user.username, "--scope", "write", "--action", "oss:PutObject", "--key", key,
        denied=True,
    )  # fmt: skip
    resource = f"acs:oss:*:*:{settings.OSS_BUCKET}/{key}"
    tail = output.splitlines()[-3:]
    assert tail[0] == (
        f"DENIED: oss:PutObject on {resource} with oss:x-oss-forbid-overwrite='false'"
    )
    assert tail[1].startswith('Decided by statement 2 (Deny): {"Effect":"Deny"')
    assert tail[2] == (
        f'Reason: statement 2 of "session policy" denies oss:PutObject on {resource}'
    )


def test_denied_for_another_users_key(user, other_user, settings):
    key = f"users/{other_user.public_id}/photo.jpg"
    output = explain(
        "--user",
        user.username,
        "--scope",
        "readwrite",
        "--action",
        "oss:GetObject",
        "--key",
        key,
        denied=True,
    )
    resource = f"acs:oss:*:*:{settings.OSS_BUCKET}/{key}"
    tail = output.splitlines()[-3:]
    assert tail == [
        f"DENIED: oss:GetObject on {resource}",
        "Decided by: no statement matches (implicit deny).",
        f'Reason: no statement of "session policy" allows oss:GetObject on {resource}',
    ]


def test_write_scope_cannot_read(user, settings):
    key = f"users/{user.public_id}/photo.jpg"
    output = explain(
        "--user",
        user.username,
        "--scope",
        "write",
        "--action",
        "oss:GetObject",
        "--key",
        key,
        denied=True,
    )
    assert f"DENIED: oss:GetObject on acs:oss:*:*:{settings.OSS_BUCKET}/{key}" in output


def test_listing_uses_the_key_as_prefix_condition(user, other_user, settings):
    own = explain(
        "--user", user.username, "--scope", "read", "--action", "oss:ListObjects",
        "--key", f"users/{user.public_id}/",
    )  # fmt: skip
    assert (
        f"ALLOWED: oss:ListObjects on acs:oss:*:*:{settings.OSS_BUCKET} with oss:Prefix="
        f"'users/{user.public_id}/'" in own
    )
    assert "Decided by statement 2 (Allow)" in own
    other = explain(
        "--user", user.username, "--scope", "read", "--action", "oss:ListObjects",
        "--key", f"users/{other_user.public_id}/", denied=True,
    )  # fmt: skip
    assert f"DENIED: oss:ListObjects on acs:oss:*:*:{settings.OSS_BUCKET}" in other
    assert "statement 2 matches, but oss:Prefix=" in other


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "ghost", "--scope", "read"], "No user with username or public id 'ghost'."),
        (
            ["--scope", "sideways"],
            "Unknown scope 'sideways'. Use one of: read, write, readwrite, bucket_read, "
            "bucket_read_write, all.",
        ),
        (
            ["--scope", "read", "--action", "oss:GetObject"],
            "--action and --key go together: give both or neither.",
        ),
        (
            ["--scope", "write", "--action", "oss:PutObject", "--key", "k", "--header", "x"],
            "--header takes NAME=VALUE, not 'x'.",
        ),
    ],
)
def test_clear_errors(user, args, message):
    if "--user" not in args:
        args = ["--user", user.username, *args]
    with pytest.raises(CommandError) as caught:
        explain(*args)
    assert str(caught.value) == message
    assert caught.value.returncode == 2


@pytest.mark.slow(6)
@pytest.mark.django_db(transaction=True)
def test_exit_status_says_allowed_or_denied(user, other_user):
    """Like grep: 0 allowed, 1 denied, 2 error, so a script can branch on the decision."""
    env = {"APP_ENV": "local", "DATABASE_URL": database_url(connection)}

    def status(key: str, username: str = user.username) -> tuple[int, str, str]:
        result = run_manage(
            "explain_policy", "--user", username, "--scope", "readwrite",
            "--action", "oss:GetObject", "--key", key, env=env,
        )  # fmt: skip
        return result.returncode, result.stdout.splitlines()[-1:], result.stderr

    own, other = f"users/{user.public_id}/a.jpg", f"users/{other_user.public_id}/a.jpg"
    assert status(own)[:2] == (
        0,
        [
            f'Reason: statement 1 of "session policy" allows '
            f"oss:GetObject on acs:oss:*:*:{settings.OSS_BUCKET}/{own}"
        ],
    )
    code, _, stderr = status(other)
    assert (code, stderr) == (
        1,
        f"CommandError: Denied: oss:GetObject on acs:oss:*:*:{settings.OSS_BUCKET}/{other}.\n",
    )
    assert status(own, username="ghost") == (
        2,
        [],
        "CommandError: No user with username or public id 'ghost'.\n",
    )
