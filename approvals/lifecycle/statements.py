"""The SQL the lifecycle sends itself: the guarded UPDATE … RETURNING that applies a transition (the
ORM has no RETURNING for updates), the audit chain's lock, and the INSERT of the rows a transition
writes (the ORM compiles each statement anew, ~0.4 ms of CPU apiece, measured in the README's
"Performance").

Identifiers come from model metadata, never from input; every value is a query parameter, prepared
by the model's own field (``get_db_prep_save`` / ``get_db_prep_value``), so that JSON, dates and
UUIDs are adapted exactly as the ORM adapts them. The same SQL runs on PostgreSQL and SQLite.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection, models

from approvals.lifecycle import audit_chain
from approvals.models import AuditEvent


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


def _field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field)
    return field


@dataclass(frozen=True)
class Condition:
    """One SQL condition on a model's columns, with its parameters (a transition's guard)."""

    sql: str
    params: tuple[Any, ...] = ()


def equals(model: type[models.Model], name: str, value: Any) -> Condition:
    field = _field(model, name)
    return Condition(f"{_quote(field.column)} = %s", (field.get_db_prep_value(value, connection),))


def at_most(model: type[models.Model], name: str, value: Any) -> Condition:
    field = _field(model, name)
    return Condition(f"{_quote(field.column)} <= %s", (field.get_db_prep_value(value, connection),))


def is_null(model: type[models.Model], name: str) -> Condition:
    return Condition(f"{_quote(_field(model, name).column)} IS NULL")


def one_of(model: type[models.Model], name: str, values: Iterable[Any]) -> Condition:
    field = _field(model, name)
    prepared = tuple(field.get_db_prep_value(value, connection) for value in values)
    return Condition(f"{_quote(field.column)} IN ({', '.join(['%s'] * len(prepared))})", prepared)


def either(*conditions: Condition) -> Condition:
    return Condition("(" + " OR ".join(c.sql for c in conditions) + ")", tuple(p for c in conditions for p in c.params))


def update_returning(
    model: type[models.Model], values: Mapping[str, Any], where: Sequence[Condition], returning: Sequence[str]
) -> tuple[Any, ...] | None:
    """``UPDATE model SET values WHERE every condition RETURNING returning`` (raw column values);
    the returned row, or None when no row matched. Meant for one row, chosen by its key."""
    assignments, params = [], []
    for name, value in values.items():
        field = _field(model, name)
        assignments.append(f"{_quote(field.column)} = %s")
        params.append(field.get_db_prep_save(value, connection))
    columns = ", ".join(_quote(_field(model, name).column) for name in returning)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_quote(model._meta.db_table)} SET {', '.join(assignments)} "  # noqa: S608
            f"WHERE {' AND '.join(c.sql for c in where)} RETURNING {columns}",
            [*params, *(p for c in where for p in c.params)],
        )
        row = cursor.fetchone()
    return tuple(row) if row is not None else None


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
