"""The SQL the lifecycle sends itself, where the ORM has no form for it: the guarded UPDATE …
RETURNING that applies a transition, and the audit chain's advisory lock. Everything else is the
ORM's: a hand-written INSERT of the rows a transition writes measured within the noise of the ORM's
(bench/write_path.py, README "Performance"), so the ORM writes them.

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
