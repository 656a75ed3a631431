"""Show the session policy a user gets for a scope, and whether it allows an action on a key.

    manage.py explain_policy --user alice --scope readwrite
    manage.py explain_policy --user alice --scope write \
        --action oss:GetObject --key users/<public id>/a.jpg

Evaluation uses the RAM engine the local emulator uses (policies.evaluation), on the session policy
alone: the role's own policy in RAM can only narrow the result further, never widen it.
For oss:ListObjects, --key is the listing prefix (the request's oss:Prefix). Request headers that
RAM sees as condition keys are given with --header (x-oss-forbid-overwrite=true becomes
oss:x-oss-forbid-overwrite); for oss:PutObject an absent x-oss-forbid-overwrite counts as
"false", OSS's default (the request would replace an existing object), as the emulator counts it.

Exit status, as grep's: 0 allowed (or no --action), 1 denied, 2 an error (no such user, ...),
so scripts can test a decision with `&&`.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from accounts.models import User
from policies.evaluation import evaluate_all
from policies.services import ALL_SCOPES, PolicyTemplateError, policy_for_user

SESSION_POLICY = "session policy"
DENIED, ERROR = 1, 2
FORBID_OVERWRITE_KEY = "oss:x-oss-forbid-overwrite"


def _headers(pairs: list[str]) -> dict[str, str]:
    context = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise CommandError(f"--header takes NAME=VALUE, not {pair!r}.", returncode=ERROR)
        context[f"oss:{name.strip().lower()}"] = value.strip()
    return context


class Command(BaseCommand):
    help = (
        "Print the rendered session policy of a user and scope; optionally explain a decision. "
        "Exit status: 0 allowed (or no --action), 1 denied, 2 error."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--user", required=True, help="Username or public id.")
        parser.add_argument("--scope", required=True, help=f"One of: {', '.join(ALL_SCOPES)}.")
        parser.add_argument("--action", help="An OSS action, e.g. oss:PutObject.")
        parser.add_argument("--key", help="Object key (for oss:ListObjects: the prefix listed).")
        parser.add_argument(
            "--header",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="A request header RAM sees as a condition key, e.g. x-oss-forbid-overwrite=true.",
        )

    def handle(self, *args, **options) -> None:
        ident, scope = options["user"], options["scope"]
        action, key = options.get("action"), options.get("key")
        if (action is None) != (key is None):
            raise CommandError(
                "--action and --key go together: give both or neither.", returncode=ERROR
            )
        headers = _headers(options["header"])
        user = User.objects.filter(Q(username=ident) | Q(public_id=ident)).first()
        if user is None:
            raise CommandError(f"No user with username or public id {ident!r}.", returncode=ERROR)
        if scope not in ALL_SCOPES:
            raise CommandError(
                f"Unknown scope {scope!r}. Use one of: {', '.join(ALL_SCOPES)}.", returncode=ERROR
            )
        try:
            policy = policy_for_user(user=user, scope=scope)
        except PolicyTemplateError as exc:
            raise CommandError(str(exc), returncode=ERROR) from None

        out = self.stdout
        where = f"prefix {policy.prefix}" if policy.prefix else "the whole bucket"
        out.write(
            f"Session policy for user {user.username} (public id {user.public_id}), scope "
            f"{scope}: {where} in bucket {policy.bucket}; {len(policy.text)} characters "
            "minified (STS limit 2048)."
        )
        out.write(json.dumps(policy.document, indent=2))
        if action is None:
            return

        bucket = settings.OSS_BUCKET
        if action.lower() == "oss:listobjects":
            resource, context = f"acs:oss:*:*:{bucket}", {"oss:Prefix": key}
        else:
            resource, context = f"acs:oss:*:*:{bucket}/{key}", {}
            if action.lower() == "oss:putobject":
                context[FORBID_OVERWRITE_KEY] = "false"
        context.update(headers)
        decision = evaluate_all(
            [(SESSION_POLICY, policy.document)], action=action, resource=resource, context=context
        )
        out.write(
            "Evaluated against the session policy alone (the role's own policy in RAM can only "
            "narrow this further)."
        )
        verdict = "ALLOWED" if decision.allowed else "DENIED"
        extra = (
            " with " + ", ".join(f"{name}={value!r}" for name, value in context.items())
            if context
            else ""
        )
        out.write(f"{verdict}: {action} on {resource}{extra}")
        if decision.statement_index is not None:
            statement = policy.document["Statement"][decision.statement_index - 1]
            out.write(
                f"Decided by statement {decision.statement_index} ({decision.effect}): "
                + json.dumps(statement, separators=(",", ":"))
            )
        else:
            out.write("Decided by: no statement matches (implicit deny).")
        out.write(f"Reason: {decision.reason}")
        if not decision.allowed:
            raise CommandError(f"Denied: {action} on {resource}.", returncode=DENIED)
