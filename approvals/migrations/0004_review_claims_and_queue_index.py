import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

QUEUE_INDEX = models.Index(
    models.OrderBy(models.F("escalated"), descending=True),
    models.OrderBy(models.F("sla_deadline"), nulls_last=True),
    models.OrderBy(models.F("risk_score"), descending=True, nulls_last=True),
    models.OrderBy(models.F("created_at")),
    condition=models.Q(("status", "needs_review")),
    name="action_queue_idx",
)
# SQLite (the embedded demo) cannot say NULLS LAST in an index: the same columns, plain.
EMBEDDED_QUEUE_INDEX = models.Index(
    fields=["-escalated", "sla_deadline", "-risk_score", "created_at"],
    condition=models.Q(("status", "needs_review")),
    name="action_queue_idx",
)


def _queue_index(schema_editor):  # type: ignore[no-untyped-def]
    return QUEUE_INDEX if schema_editor.connection.vendor == "postgresql" else EMBEDDED_QUEUE_INDEX


def add_queue_index(apps, schema_editor):  # type: ignore[no-untyped-def]
    schema_editor.add_index(apps.get_model("approvals", "ProposedAction"), _queue_index(schema_editor))


def remove_queue_index(apps, schema_editor):  # type: ignore[no-untyped-def]
    schema_editor.remove_index(apps.get_model("approvals", "ProposedAction"), _queue_index(schema_editor))


class Migration(migrations.Migration):
    dependencies = [
        ("approvals", "0003_refused_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveIndex(model_name="proposedaction", name="action_queue_idx"),
        migrations.AddField(
            model_name="proposedaction",
            name="claimed_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="proposedaction",
            name="claimed_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
        # The queue's index matches selectors.review_queue()'s ORDER BY, NULLS placement included.
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="proposedaction", index=QUEUE_INDEX)],
            database_operations=[migrations.RunPython(add_queue_index, remove_queue_index)],
        ),
        migrations.AddIndex(
            model_name="proposedaction",
            index=models.Index(
                fields=["-decided_at"], condition=models.Q(("decided_at__isnull", False)), name="action_decided_idx"
            ),
        ),
    ]
