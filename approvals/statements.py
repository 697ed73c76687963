"""The SQL of the gate's hot paths, written out.

A proposal's evaluation is the gate's busiest write. The ORM compiles each statement anew, ~0.4 ms
of CPU apiece, which was most of what an evaluation cost (bench/results/report.md, "Profiles").
These functions send the SQL the ORM would, with values prepared by the models' own fields (so JSON,
dates and UUIDs are adapted exactly as the ORM adapts them), and nothing else. Identifiers come
from model metadata, never from input; every value is a query parameter.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from django.db import connection, models

from approvals import audit_chain
from approvals.models import ActionType, Agent, AuditEvent, ProposedAction, Status


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


def _prepared(model: type[models.Model], values: dict[str, Any]) -> tuple[list[str], list[Any]]:
    columns, params = [], []
    for name, value in values.items():
        field = model._meta.get_field(name)
        assert isinstance(field, models.Field)
        columns.append(_quote(field.column))
        params.append(field.get_db_prep_save(value, connection))
    return columns, params


def insert(instance: models.Model) -> None:
    """INSERT a new model instance as ``instance.save(force_insert=True)`` would: each field's
    ``pre_save`` (auto_now_add, defaults already set by the constructor), the key from RETURNING
    when the database assigns it; no signals (the gate connects none to these models)."""
    opts = instance._meta
    key = opts.pk
    assert key is not None
    database_keyed = isinstance(key, models.AutoField)
    fields = [f for f in opts.concrete_fields if not (f is key and database_keyed)]
    columns = [_quote(f.column) for f in fields]
    params = [f.get_db_prep_save(f.pre_save(instance, True), connection) for f in fields]
    placeholders = ", ".join(["%s"] * len(params))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_quote(opts.db_table)} ({', '.join(columns)}) VALUES ({placeholders}) "  # noqa: S608
            f"RETURNING {_quote(key.column)}",
            params,
        )
        if database_keyed:
            instance.pk = cursor.fetchone()[0]
    instance._state.adding = False
    instance._state.db = connection.alias


def update(model: type[models.Model], values: dict[str, Any], where: dict[str, Any]) -> int:
    """UPDATE the rows of ``model`` that match every equality of ``where``; returns how many."""
    columns, params = _prepared(model, values)
    conditions, where_params = _prepared(model, where)
    assignments = ", ".join(f"{column} = %s" for column in columns)
    matches = " AND ".join(f"{column} = %s" for column in conditions)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_quote(model._meta.db_table)} SET {assignments} WHERE {matches}",  # noqa: S608
            params + where_params,
        )
        return int(cursor.rowcount)


def lock_chain_and_read_last_link(chain: str) -> tuple[int, str] | None:
    """Take the chain's transaction-scoped advisory lock (PostgreSQL; SQLite transactions are serial),
    then read its last link as (seq, hash); None for an empty chain. Two statements, in this order:
    under READ COMMITTED a statement sees what committed before it began, so the read must begin
    after the lock is held."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [audit_chain.advisory_key(chain)])
        cursor.execute(
            f"SELECT seq, hash FROM {_quote(AuditEvent._meta.db_table)} "  # noqa: S608
            "WHERE chain = %s ORDER BY seq DESC LIMIT 1",
            [chain],
        )
        row = cursor.fetchone()
    return (int(row[0]), str(row[1])) if row else None


_EVALUATION_LOAD: tuple[str, list[str], list[tuple[int, list[Any], Any]]] | None = None


def _evaluation_load() -> tuple[str, list[str], list[tuple[int, list[Any], Any]]]:
    global _EVALUATION_LOAD
    if _EVALUATION_LOAD is None:
        opts = ProposedAction._meta
        table = _quote(opts.db_table)
        fields = [f for f in opts.concrete_fields if f.attname != "trajectory_raw"]
        converters = []
        for index, field in enumerate(fields):
            column = field.get_col(opts.db_table)
            found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            if found:
                converters.append((index, found, column))
        sql = f"""
            UPDATE {table} AS a SET evaluation_attempts = a.evaluation_attempts + 1
            WHERE a.id = %s AND a.status = %s
            RETURNING {", ".join(f"a.{_quote(f.column)}" for f in fields)},
                (SELECT g.name FROM {_quote(Agent._meta.db_table)} g WHERE g.id = a.agent_id),
                (SELECT t.policy_version FROM {_quote(ActionType._meta.db_table)} t WHERE t.id = a.action_type_id),
                (SELECT r.id::text || ' ' || r.status FROM {table} r
                    WHERE r.agent_id = a.agent_id AND r.action_type_id = a.action_type_id
                    AND r.status IN (%s, %s) AND r.created_at >= a.created_at - %s
                    AND r.params = a.params AND r.id <> a.id
                    ORDER BY r.created_at DESC LIMIT 1)
        """  # noqa: S608
        _EVALUATION_LOAD = (sql, [f.attname for f in fields], converters)
    return _EVALUATION_LOAD


def count_attempt_and_load(
    action_id: str, *, repeat_window: timedelta
) -> tuple[ProposedAction, str, int, str | None] | None:
    """PostgreSQL, one statement (autocommit): count an evaluation attempt of the pending action
    ``action_id`` and read it (every column but ``trajectory_raw``, which evaluating never reads),
    its agent's name, its type's policy version, and "<id> <status>" of its newest proposal with
    the same agent, type and params refused within ``repeat_window`` (the built-in check of contract
    §5, as ``selectors.refused_identical_proposal``). None when it is not pending."""
    sql, attnames, converters = _evaluation_load()
    with connection.cursor() as cursor:
        params = [action_id, Status.PENDING, Status.REJECTED, Status.BLOCKED, repeat_window]
        cursor.execute(sql, cast(list[Any], params))
        row = cursor.fetchone()
    if row is None:
        return None
    *values, agent_name, type_version, refused = row
    for index, functions, column in converters:
        for function in functions:
            values[index] = function(values[index], column, connection)
    return ProposedAction.from_db(connection.alias, attnames, values), agent_name, type_version, refused
