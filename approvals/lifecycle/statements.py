"""The SQL the lifecycle sends itself: where the ORM has no form for it (the guarded UPDATE …
RETURNING that applies a transition, the audit chain's advisory lock), and the INSERT of the rows
every transition writes (its audit link, its outbox row, an evaluation's decision), which the ORM
compiles anew each time: on the worker's path after every evaluation that cost more than 10% of its
CPU per decision (py-spy of ``celery worker -c 1`` draining a backlog; README "Performance").

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
from approvals.models import AuditEvent, ProposedAction, Status


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


def table(model: type[models.Model]) -> str:
    """A model's table, quoted (the written-out statements of every room use these three)."""
    return _quote(model._meta.db_table)


def column(model: type[models.Model], name: str) -> str:
    """A field's column, quoted."""
    return _quote(_field(model, name).column)


def statuses(*values: str) -> str:
    """Statuses written into a statement as SQL literals, ``('approved', 'auto_approved')``: constants
    of the lifecycle, never input. A partial index whose condition names statuses answers only a plan
    that knows them, and a prepared statement's plan is made for any parameter values."""
    known = {str(status) for status in Status}
    if not values or any(value not in known for value in values):
        raise ValueError(f"not statuses of the lifecycle: {values}")
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"


def action_key(action_id: Any) -> Any:
    """An action's id as the database takes it."""
    return _field(ProposedAction, "id").get_db_prep_value(action_id, connection)


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


_COMPARISONS = frozenset({"<", "<=", "=", ">=", ">"})


def compared_to_column(model: type[models.Model], name: str, op: str, other: str, *, minus: int = 0) -> Condition:
    """``name op other - minus``, two columns of the same row: re-checked on the row's newest version
    when the UPDATE waited for its lock (a subquery would not be, under READ COMMITTED)."""
    if op not in _COMPARISONS:
        raise ValueError(f"not a comparison: {op}")
    return Condition(f"{column(model, name)} {op} {column(model, other)} - %s", (minus,))


@dataclass(frozen=True)
class Increment:
    """A value for ``update_returning``: the column plus ``by`` (``F(name) + by``), computed by the
    UPDATE itself on the row it locked, so that racing increments each count."""

    by: int = 1


def either(*conditions: Condition) -> Condition:
    return Condition("(" + " OR ".join(c.sql for c in conditions) + ")", tuple(p for c in conditions for p in c.params))


def related_column(model: type[models.Model], relation: str, name: str) -> str:
    """``(SELECT related.name FROM related WHERE related.key = model.relation)``: a column of the row
    that the foreign key ``relation`` of ``model`` points to, for an UPDATE to return beside the
    model's own columns (``update_returning``'s ``also``), in the same statement."""
    key = _field(model, relation)
    related = key.related_model
    assert isinstance(related, type)
    assert issubclass(related, models.Model)
    assert related._meta.pk is not None
    return (
        f"(SELECT {column(related, name)} FROM {table(related)} "  # noqa: S608
        f"WHERE {table(related)}.{_quote(related._meta.pk.column)} = {table(model)}.{_quote(key.column)})"
    )


def update_returning_all(
    model: type[models.Model],
    values: Mapping[str, Any],
    where: Sequence[Condition],
    returning: Sequence[str],
    also: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """``UPDATE model SET values WHERE every condition RETURNING returning, also``: the rows it
    changed. ``also``: expressions of this module (``related_column``), never input."""
    assignments, params = [], []
    for name, value in values.items():
        field = _field(model, name)
        if isinstance(value, Increment):
            assignments.append(f"{_quote(field.column)} = {_quote(field.column)} + %s")
            params.append(value.by)
            continue
        assignments.append(f"{_quote(field.column)} = %s")
        params.append(field.get_db_prep_save(value, connection))
    columns = ", ".join([*(_quote(_field(model, name).column) for name in returning), *also])
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_quote(model._meta.db_table)} SET {', '.join(assignments)} "  # noqa: S608
            f"WHERE {' AND '.join(c.sql for c in where)} RETURNING {columns}",
            [*params, *(p for c in where for p in c.params)],
        )
        return [tuple(row) for row in cursor.fetchall()]


def update_returning(
    model: type[models.Model],
    values: Mapping[str, Any],
    where: Sequence[Condition],
    returning: Sequence[str],
    also: Sequence[str] = (),
) -> tuple[Any, ...] | None:
    """The same for one row, chosen by its key: the row, or None when it did not match."""
    rows = update_returning_all(model, values, where, returning, also)
    return rows[0] if rows else None


def _insert_sql(instance: models.Model) -> tuple[str, list[Any], bool]:
    """(``INSERT … RETURNING key``, its parameters, whether the database assigns the key)."""
    opts = instance._meta
    key = opts.pk
    assert key is not None
    database_keyed = isinstance(key, models.AutoField)
    fields = [f for f in opts.concrete_fields if not (f is key and database_keyed)]
    columns = ", ".join(_quote(f.column) for f in fields)
    params = [f.get_db_prep_save(f.pre_save(instance, True), connection) for f in fields]
    sql = (
        f"INSERT INTO {_quote(opts.db_table)} ({columns}) VALUES ({', '.join(['%s'] * len(params))}) "  # noqa: S608
        f"RETURNING {_quote(key.column)}"
    )
    return sql, params, database_keyed


def insert(instance: models.Model) -> None:
    """INSERT a new model instance as ``instance.save(force_insert=True)`` would: each field's
    ``pre_save`` (defaults already set by the constructor, ``auto_now_add``), the key from RETURNING
    when the database assigns it; no signals (the gate connects none to these models)."""
    sql, params, database_keyed = _insert_sql(instance)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if database_keyed:
            instance.pk = cursor.fetchone()[0]


def insert_all(instances: Sequence[models.Model]) -> None:
    """INSERT several new instances as ``insert`` does each: on PostgreSQL in one statement (each
    INSERT a data-modifying CTE, so one round trip for a transition's rows), elsewhere one by one.
    The rows may not refer to each other (the CTEs of one statement do not see each other's rows)."""
    if connection.vendor != "postgresql" or len(instances) < 2:
        for instance in instances:
            insert(instance)
        return
    parts, params, keyed = [], [], []
    for index, instance in enumerate(instances):
        sql, values, database_keyed = _insert_sql(instance)
        parts.append(f"i{index} AS ({sql})")
        params.extend(values)
        keyed.append(database_keyed)
    keys = ", ".join(f"(SELECT * FROM i{index})" for index in range(len(instances)))  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {', '.join(parts)} SELECT {keys}", params)
        row = cursor.fetchone()
    for instance, database_keyed, key in zip(instances, keyed, row, strict=True):
        if database_keyed:
            instance.pk = key


def lock_chain_and_read_last_link(
    chain: str, *, action_id: Any = None, row_locked: bool = False
) -> tuple[int, str] | None:
    """Serialise the chain's writers, then read its last link as (seq, hash); None for an empty chain.

    An action's chain is written only by whoever holds the action's row lock: a transition holds it
    already (its guarded UPDATE took it: ``row_locked``), any other writer takes it here. The gate
    chain, which has no row, takes a transaction-scoped advisory lock. SQLite transactions are
    serial and lock nothing. The read comes after the lock, in a statement of its own: under READ
    COMMITTED a statement sees what committed before it began.
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            if action_id is None:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [audit_chain.advisory_key(chain)])
            elif not row_locked:
                cursor.execute(
                    f"SELECT 1 FROM {_quote(ProposedAction._meta.db_table)} WHERE id = %s FOR UPDATE",  # noqa: S608
                    [_field(ProposedAction, "id").get_db_prep_value(action_id, connection)],
                )
        cursor.execute(
            f"SELECT seq, hash FROM {_quote(AuditEvent._meta.db_table)} "  # noqa: S608
            "WHERE chain = %s ORDER BY seq DESC LIMIT 1",
            [chain],
        )
        row = cursor.fetchone()
    return (int(row[0]), str(row[1])) if row else None
