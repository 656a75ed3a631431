"""Usernames become unique ignoring case and look-alike characters; refresh tokens get sessions.

Existing accounts whose names clash (``Demo`` beside ``demo``, ``demo`` with a Cyrillic ``e``) cannot all keep
their names once login ignores case: the oldest account keeps it, each later one is renamed to
``<name>-<id>`` (printed here, so an operator can tell those users). Storage paths use the public
id, so a rename moves no file.
"""

import uuid

import accounts.models
import django.db.models.deletion
import django.db.models.functions.text
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

from accounts.usernames import username_normalize, username_skeleton


def _fill_skeletons(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    taken_skeletons: set[str] = set()
    for user in User.objects.order_by("date_joined", "pk").only("pk", "username"):
        name = username_normalize(user.username)
        skeleton = username_skeleton(name)
        if skeleton in taken_skeletons:
            suffix = f"-{user.pk}"
            name = name[: 150 - len(suffix)] + suffix
            skeleton = username_skeleton(name)
            while skeleton in taken_skeletons:
                name = name[: 150 - len(suffix) - 1] + "_" + suffix
                skeleton = username_skeleton(name)
            print(f"\n  Renamed user {user.pk} from {user.username!r} to {name!r} (name clash)")
        taken_skeletons.add(skeleton)
        User.objects.filter(pk=user.pk).update(username=name, username_skeleton=skeleton)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_credentials_epoch"),
    ]

    operations = [
        migrations.AlterModelManagers(
            name="user",
            managers=[("objects", accounts.models.AppUserManager())],
        ),
        migrations.AddField(
            model_name="user",
            name="username_skeleton",
            field=models.TextField(editable=False, null=True),
        ),
        migrations.RunPython(_fill_skeletons, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="user",
            name="username_skeleton",
            field=accounts.models.UsernameSkeletonField(
                editable=False,
                help_text="UTS #39 skeleton of the case-folded username: look-alike names share it.",
                unique=True,
            ),
        ),
        migrations.AddConstraint(
            model_name="user",
            constraint=models.UniqueConstraint(
                django.db.models.functions.text.Lower("username"),
                name="accounts_user_username_lower_unique",
                violation_error_message="That username is taken.",
            ),
        ),
        migrations.CreateModel(
            name="LoginSession",
            fields=[
                (
                    "id",
                    models.UUIDField(
                        default=uuid.uuid4, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("refresh_jti", models.CharField(max_length=64)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("last_used_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("expires_at", models.DateTimeField()),
                ("user_agent", models.CharField(blank=True, max_length=255)),
                ("ip_address", models.GenericIPAddressField(blank=True, null=True)),
                ("ended_at", models.DateTimeField(blank=True, null=True)),
                (
                    "end_reason",
                    models.CharField(
                        blank=True,
                        choices=[
                            ("logout", "Logged out"),
                            ("revoked", "Ended by the user or staff"),
                            ("reuse", "An already used refresh token was presented"),
                        ],
                        max_length=16,
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="login_sessions",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(fields=["user", "-last_used_at"], name="accounts_session_user")
                ],
            },
        ),
    ]
