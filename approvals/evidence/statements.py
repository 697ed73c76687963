"""The SQL of the executed-repeat search (contract §6.1 ``repeat_of_executed``), written out once:
the evaluation's one-statement load (gate/statements.py) runs it for equal params, and
``executed_params`` for a type that names identity params. Run through the public raw-SQL API:
identifiers from model metadata, every value a parameter but the lifecycle's statuses (constants, so
that the plan can use the partial indexes that name them)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.db import connection

from approvals.lifecycle.statements import action_key, column, statuses, table
from approvals.models import ProposedAction, Status


def has_session(context: Any) -> bool:
    """Whether an action's context names a session, as ``executed_conditions`` reads it."""
    session = context.get("session_id") if isinstance(context, dict) else None
    return session is not None and session != ""


def executed_conditions(e: str, a: str, *, session: bool | None = None) -> str:
    """The built-in repeat_of_executed's search (contract §6.1), one definition: action ``e`` is an
    earlier action of ``a``'s agent and type, approved or auto-approved, not reported as failed, in
    ``a``'s ``context.session_id`` (since the parameter's time when ``a`` has none). ``session``: whether ``a`` has one,
    when the caller knows (so that the condition is plain and ``action_done_session_idx`` answers
    it); None decides in SQL. Parameter: the time, unless ``session`` is True."""
    c = {
        n: column(ProposedAction, n)
        for n in ("id", "agent", "action_type", "status", "outcome_executed", "context", "created_at")
    }
    own = f"{a}.{c['context']} ->> 'session_id'"
    same_session = f"{e}.{c['context']} ->> 'session_id' = {own}"
    since = f"{e}.{c['created_at']} >= %s"
    scope = {
        True: same_session,
        False: since,
        None: f"CASE WHEN COALESCE({own}, '') <> '' THEN {same_session} ELSE {since} END",
    }[session]
    return f"""{e}.{c["agent"]} = {a}.{c["agent"]} AND {e}.{c["action_type"]} = {a}.{c["action_type"]}
        AND {e}.{c["status"]} IN {statuses(Status.APPROVED, Status.AUTO_APPROVED)}
        AND {e}.{c["outcome_executed"]} IS NOT FALSE
        AND {e}.{c["id"]} <> {a}.{c["id"]}
        AND {scope}"""


def executed_params(
    action_id: Any, *, session: bool, executed_since: datetime, limit: int
) -> list[tuple[Any, str, Any]]:
    """(id, status, params) of the newest ``limit`` actions repeat_of_executed compares with the
    pending action ``action_id`` when its type names identity params (``executed_conditions``)."""
    action = table(ProposedAction)
    c = {n: column(ProposedAction, n) for n in ("id", "status", "params", "created_at")}
    sql = f"""SELECT e.{c["id"]}, e.{c["status"]}, e.{c["params"]} FROM {action} e JOIN {action} a ON a.{c["id"]} = %s
        WHERE {executed_conditions("e", "a", session=session)} ORDER BY e.{c["created_at"]} DESC LIMIT %s"""  # noqa: S608
    since = ProposedAction._meta.get_field("created_at").get_db_prep_value(executed_since, connection)
    window = [] if session else [since]
    with connection.cursor() as cursor:
        cursor.execute(sql, [action_key(action_id), *window, limit])
        rows = cursor.fetchall()
    # jsonb arrives as text (Django's psycopg setup) and SQLite's JSON is text: parsed as the ORM would
    return [(pk, status, json.loads(params) if isinstance(params, str) else params) for pk, status, params in rows]
