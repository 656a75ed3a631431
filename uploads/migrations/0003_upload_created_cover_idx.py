# Reports (reports/selectors.py): a covering index for activity over a date range, and
# PostgreSQL statistics on the day/week/month expressions the period reports group by, so the
# planner expects ~hundreds of groups (a small hash aggregate) instead of one per row (a sort
# spilling to disk at 1M rows).

from django.db import migrations, models

PERIODS = ("day", "week", "month")


def create_statistics(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for period in PERIODS:
        schema_editor.execute(
            f"CREATE STATISTICS IF NOT EXISTS upload_created_{period}_stats "
            f"ON (DATE_TRUNC('{period}', created_at AT TIME ZONE 'UTC')) FROM uploads_upload"
        )


def drop_statistics(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for period in PERIODS:
        schema_editor.execute(f"DROP STATISTICS IF EXISTS upload_created_{period}_stats")


class Migration(migrations.Migration):

    dependencies = [
        ("uploads", "0002_refusal_object_missing"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="upload",
            index=models.Index(
                fields=["created_at"],
                include=("owner", "size", "status", "content_type"),
                name="upload_created_cover_idx",
            ),
        ),
        migrations.RunPython(create_statistics, drop_statistics),
    ]
