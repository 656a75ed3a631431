# The owner-only indexes Django adds to foreign keys duplicate the composite indexes that start
# with owner (upload_owner_created_idx, uploadticket_owner_status_idx), and each costs a write
# per ticket and per callback. Only the indexes are dropped: AlterField would also drop and
# re-add the foreign keys, re-validating every row under lock.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

_INDEXES = [
    ("uploads_upload", "uploads_upload_owner_id_dc17a23e"),
    ("uploads_uploadticket", "uploads_uploadticket_owner_id_95e38bc7"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("uploads", "0004_drop_redundant_created_idx"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="upload",
                    name="owner",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="uploads",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                migrations.AlterField(
                    model_name="uploadticket",
                    name="owner",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="upload_tickets",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{index}"',
                    reverse_sql=f'CREATE INDEX "{index}" ON "{table}" ("owner_id")',
                )
                for table, index in _INDEXES
            ],
        ),
    ]
