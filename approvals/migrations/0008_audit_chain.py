"""Hash-chain the audit log and make it append-only in the database (issue 7).

Adds chain / seq / prev_hash / hash to AuditEvent, backfills existing rows chain by chain in
(created_at, id) order, then installs triggers refusing UPDATE and DELETE (PostgreSQL: a plpgsql
row trigger; SQLite: RAISE(ABORT)). TRUNCATE is not blocked: it is a table-owner operation, withheld
by privileges (the test runner flushes with it).
"""

from typing import Any

import django.utils.timezone
from django.db import migrations, models

from approvals.lifecycle.audit_chain import GENESIS, chain_of, event_hash

TABLE = "approvals_auditevent"

PG_INSTALL = f"""
CREATE OR REPLACE FUNCTION approvals_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only: % on {TABLE} refused', TG_OP
        USING HINT = 'the audit log is hash-chained; verify it with manage.py verify_audit';
END;
$$;
DROP TRIGGER IF EXISTS audit_append_only ON {TABLE};
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION approvals_audit_append_only();
"""
PG_REMOVE = f"""
DROP TRIGGER IF EXISTS audit_append_only ON {TABLE};
DROP FUNCTION IF EXISTS approvals_audit_append_only();
"""
SQLITE_INSTALL = [
    f"""CREATE TRIGGER IF NOT EXISTS audit_append_only_update BEFORE UPDATE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, 'audit events are append-only: UPDATE on {TABLE} refused'); END;""",
    f"""CREATE TRIGGER IF NOT EXISTS audit_append_only_delete BEFORE DELETE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, 'audit events are append-only: DELETE on {TABLE} refused'); END;""",
]
SQLITE_REMOVE = [
    "DROP TRIGGER IF EXISTS audit_append_only_update;",
    "DROP TRIGGER IF EXISTS audit_append_only_delete;",
]


def backfill(apps: Any, schema_editor: Any) -> None:
    AuditEvent = apps.get_model("approvals", "AuditEvent")
    db = schema_editor.connection.alias
    rows = AuditEvent.objects.using(db).order_by("action_id", "created_at", "id")
    batch: list[Any] = []
    chain, seq, prev = None, 0, GENESIS
    for row in rows.iterator(chunk_size=2000):
        row_chain = chain_of(row.action_id)
        if row_chain != chain:
            chain, seq, prev = row_chain, 0, GENESIS
        seq += 1
        row.chain, row.seq, row.prev_hash = row_chain, seq, prev
        row.hash = prev = event_hash(row, prev)
        batch.append(row)
        if len(batch) >= 2000:
            AuditEvent.objects.using(db).bulk_update(batch, ["chain", "seq", "prev_hash", "hash"])
            batch = []
    if batch:
        AuditEvent.objects.using(db).bulk_update(batch, ["chain", "seq", "prev_hash", "hash"])


def install_triggers(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_INSTALL, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_INSTALL:
            schema_editor.execute(statement, params=None)


def remove_triggers(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_REMOVE, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_REMOVE:
            schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("approvals", "0007_webhook_deliveries"),
    ]

    operations = [
        migrations.AlterField(
            model_name="auditevent",
            name="created_at",
            field=models.DateTimeField(default=django.utils.timezone.now, editable=False),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="chain",
            field=models.CharField(default="", editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditevent",
            name="seq",
            field=models.PositiveBigIntegerField(default=0, editable=False),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditevent",
            name="prev_hash",
            field=models.CharField(default="", editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditevent",
            name="hash",
            field=models.CharField(default="", editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop, elidable=False),
        migrations.AddConstraint(
            model_name="auditevent",
            constraint=models.UniqueConstraint(fields=("chain", "seq"), name="audit_chain_seq_uniq"),
        ),
        migrations.RunPython(install_triggers, remove_triggers, elidable=False),
    ]
