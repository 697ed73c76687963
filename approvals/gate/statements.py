"""The SQL of an evaluation's reads, written out: the worker's busiest path.

Built with the ORM, counting an attempt and loading the action with its agent, its type's version and
the built-in repeat check cost a third of a worker's CPU per decision, most of it compiling the
queries anew each time (py-spy of ``celery worker -c 1`` draining a backlog; ``bench/write_path.py``;
README "Performance"). Here they are one statement on PostgreSQL (the count in a data-modifying CTE)
and two on SQLite, which has none; the SELECT and its repeat check are the same text for both. Run
through the public raw-SQL API: identifiers from model metadata, every value a parameter prepared by
its field, but the lifecycle's statuses: constants written as literals, so that the plan of a
prepared statement can use the partial indexes that name them (GATE_DB_SERVER_SIDE_BINDING).
"""

from __future__ import annotations

from datetime import datetime
from functools import cache

from django.db import connection

from approvals.evidence.statements import executed_conditions
from approvals.lifecycle.statements import action_key, column, statuses, table
from approvals.models import ActionType, Agent, ProposedAction, ShadowPolicy, Status


@cache
def _count_sql() -> str:
    attempts, key, status = (column(ProposedAction, n) for n in ("evaluation_attempts", "id", "status"))
    return (
        f"UPDATE {table(ProposedAction)} SET {attempts} = {attempts} + 1 "  # noqa: S608
        f"WHERE {key} = %s AND {status} = %s"
    )


def count_evaluation_attempt(action_id: str) -> bool:
    """Count an attempt at evaluating the pending action ``action_id`` (committed at once: a worker
    killed midway counts too); False when it is not pending."""
    with connection.cursor() as cursor:
        cursor.execute(_count_sql(), [action_key(action_id), Status.PENDING])
        return cursor.rowcount == 1


@cache
def _load_sql(counted: bool) -> str:
    """The pending action with its agent's name, its type's version and the repeat check. With
    ``counted`` (PostgreSQL), the attempt is counted in the same statement: the action is read from a
    data-modifying CTE; SQLite has none, and counts first (``count_evaluation_attempt``)."""
    action, agent, action_type = table(ProposedAction), table(Agent), table(ActionType)
    all_columns = [f.column for f in ProposedAction._meta.concrete_fields if f.name != "trajectory_raw"]
    columns = ", ".join(f"a.{connection.ops.quote_name(c)}" for c in all_columns)
    c = {n: column(ProposedAction, n) for n in ("id", "agent", "action_type", "params_hash", "status", "created_at")}
    attempts = column(ProposedAction, "evaluation_attempts")
    # The built-in repeat check (contract §5), one definition for both databases.
    repeat = f"""(SELECT r.{c["status"]} || ' ' || r.{c["id"]} FROM {action} r
                WHERE r.{c["agent"]} = a.{c["agent"]} AND r.{c["action_type"]} = a.{c["action_type"]}
                AND r.{c["params_hash"]} = a.{c["params_hash"]}
                AND r.{c["status"]} IN {statuses(Status.REJECTED, Status.BLOCKED)}
                AND r.{c["created_at"]} >= %s AND r.{c["id"]} <> a.{c["id"]}
                ORDER BY r.{c["created_at"]} DESC LIMIT 1)"""  # noqa: S608
    # repeat_of_executed with equal params (action_done_idx); identity params are compared apart.
    executed = f"""(SELECT e.{c["status"]} || ' ' || e.{c["id"]} FROM {action} e
                WHERE {executed_conditions("e", "a")} AND e.{c["params_hash"]} = a.{c["params_hash"]}
                ORDER BY e.{c["created_at"]} DESC LIMIT 1)"""  # noqa: S608
    # The active shadow policy (contract §6.2), if any: its id and version (a tiny table, by the partial
    # unique index one_active_shadow_policy). No statement more for the gate without a shadow.
    shadow = f"FROM {table(ShadowPolicy)} s WHERE s.{column(ShadowPolicy, 'active')} = %s"
    shadow_id = f"(SELECT s.{column(ShadowPolicy, 'id')} {shadow})"
    shadow_version = f"(SELECT s.{column(ShadowPolicy, 'version')} {shadow})"
    source, prefix = action, ""
    if counted:
        returned = ", ".join(connection.ops.quote_name(c) for c in all_columns)
        where = f"{c['id']} = %s AND {c['status']} IN {statuses(Status.PENDING)}"
        update = f"UPDATE {action} SET {attempts} = {attempts} + 1 WHERE {where} RETURNING {returned}"  # noqa: S608
        source, prefix = "counted", f"WITH counted AS ({update})"
    return f"""{prefix}
        SELECT {columns}, g.{column(Agent, "name")} AS agent_name,
            t.{column(ActionType, "policy_version")} AS type_version, {repeat} AS refused_repeat,
            {executed} AS executed_repeat, {shadow_id} AS shadow_policy_id,
            {shadow_version} AS shadow_policy_version
        FROM {source} a
        JOIN {agent} g ON g.{column(Agent, "id")} = a.{c["agent"]}
        JOIN {action_type} t ON t.{column(ActionType, "id")} = a.{c["action_type"]}
        WHERE a.{c["id"]} = %s AND a.{c["status"]} IN {statuses(Status.PENDING)}
    """  # noqa: S608


def count_and_load_for_evaluation(
    action_id: str, *, refused_since: datetime, executed_since: datetime
) -> ProposedAction | None:
    """Count an attempt at evaluating the pending action ``action_id`` (committed at once: a worker
    killed midway counts too) and read it, annotated with ``agent_name``, ``type_version`` (its type's
    policy version now) and ``refused_repeat`` ("<status> <id>" of the newest proposal of the same
    agent and type with equal params, rejected or blocked since ``refused_since``, answered by
    ``action_refused_idx``) and ``executed_repeat`` ("<status> <id>" of the newest approved action with
    equal params that repeat_of_executed finds, ``executed_conditions``, or None), ``shadow_policy_id``
    and ``shadow_policy_version`` (the active shadow policy's, or None); None when it is not pending.
    One statement on PostgreSQL, two on SQLite."""
    created_at = ProposedAction._meta.get_field("created_at")
    key = action_key(action_id)
    counted = connection.vendor == "postgresql"
    if not counted and not count_evaluation_attempt(action_id):
        return None
    params = [  # in the order of their placeholders: the count, the repeat checks, the shadow, the action
        *([key] if counted else []),
        created_at.get_db_prep_value(refused_since, connection),
        created_at.get_db_prep_value(executed_since, connection),
        True,
        True,
        key,
    ]
    return next(iter(ProposedAction.objects.raw(_load_sql(counted), params)), None)
