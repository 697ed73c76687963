"""The gate's own history as evidence (contract §6.1): aggregates over stored actions, and the
built-in ``repeat_of_executed`` check's search for the same effect already approved.

A history aggregate counts (or sums a params number of) the actions of a type in a window before
now, with given statuses and not reported as not executed, whose stored fields equal values computed
from this proposal: one SQL statement each. On PostgreSQL a params match is a containment that the
GIN index on params answers (migration 0013); otherwise the ``action_type_recent_idx`` index (type,
created_at) bounds the rows to the type's actions in the window. A match value or a query that fails
is an ``error`` finding ``history:<name>``: the action is held.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, F, FloatField, Func, Q, QuerySet, Sum

from approvals.evidence import statements
from approvals.models import ProposedAction
from approvals.policy import CompiledPolicy, HistorySpec, Proposal
from approvals.policy.engine import rule_context
from approvals.policy.evidence import HISTORY_AGENT_FIELD, identity_of
from approvals.policy.findings import finding

# repeat_of_executed without a session: the same effect approved in the last 24 hours.
EXECUTED_WINDOW = timedelta(hours=24)
EXECUTED_CANDIDATES = 200


class JSONNumber(Func):
    """The number at a path of a JSON column, or NULL where it holds anything else (a string, an
    object, nothing): so that a sum never fails on a value an agent sent as text."""

    output_field = FloatField()

    def __init__(self, column: str, path: list[str]) -> None:
        self.path = path
        super().__init__(F(column))

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        column, params = compiler.compile(self.source_expressions[0])
        sql = f"(CASE WHEN jsonb_typeof({column} #> %s) = 'number' THEN ({column} #>> %s)::double precision END)"
        return sql, [*params, self.path, *params, self.path]

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:  # type: ignore[override]
        column, params = compiler.compile(self.source_expressions[0])
        path = "$" + "".join(f"[{p}]" if p.isdigit() else f'."{p}"' for p in self.path)
        sql = f"(CASE WHEN json_type({column}, %s) IN ('integer', 'real') THEN json_extract({column}, %s) END)"
        return sql, [*params, path, *params, path]


def _condition(stored: str, value: Any) -> Q:
    """Equal values. On PostgreSQL a scalar is matched by containment (``params @> {"a": {"b": v}}``),
    which the GIN index on params answers whatever the path; elsewhere by the key's value."""
    if stored == HISTORY_AGENT_FIELD:
        return Q(agent__name=value)
    root, _, path = stored.partition(".")
    scalar = value is None or isinstance(value, (str, int, float, bool))
    if connection.vendor == "postgresql" and scalar and not any(part.isdigit() for part in path.split(".")):
        nested: Any = value
        for part in reversed(path.split(".")):
            nested = {part: nested}
        return Q(**{f"{root}__contains": nested})
    return Q(**{f"{root}__{path.replace('.', '__')}": value})


def _history_rows(spec: HistorySpec, *, action_type: str, values: dict[str, Any], now: datetime) -> QuerySet[Any]:
    rows = ProposedAction.objects.filter(
        action_type__name=spec.action_type or action_type,
        created_at__gte=now - timedelta(minutes=spec.window_minutes),
        created_at__lte=now,
        status__in=spec.statuses,
    ).exclude(outcome_executed=False)  # what the world refused did not happen
    for stored, value in values.items():
        rows = rows.filter(_condition(stored, value))
    return rows


def history_values(
    policy: CompiledPolicy, proposal: Proposal, *, action_id: Any, now: datetime
) -> tuple[dict[str, Any], list[dict], dict[str, Any]]:
    """Each aggregate's value (for CEL), the findings of those that failed, and the record kept
    with the action ({name: {"value", "matched"}} or {name: {"error"}})."""
    specs = policy.spec.history
    if not specs:
        return {}, [], {}
    values: dict[str, Any] = {}
    findings: list[dict] = []
    record: dict[str, Any] = {}
    context = None
    for spec, matches in zip(specs, policy.history_matches, strict=True):
        try:
            if context is None and matches:
                context = rule_context(policy, proposal, policy.evidence_variables)
            matched = {stored: program.execute(context) for stored, program in matches.items()}
            rows = _history_rows(spec, action_type=proposal.action_type, values=matched, now=now).exclude(pk=action_id)
            if spec.aggregate == "sum":
                path = spec.path.split(".")[1:]
                total = rows.aggregate(total=Sum(JSONNumber("params", path)))["total"]
                value: Any = float(total or 0)
            else:
                value = rows.aggregate(n=Count("pk"))["n"]
        except Exception as exc:
            findings.append(
                finding(
                    f"history:{spec.name}",
                    "error",
                    "review",
                    f"history {spec.name} could not be computed, so a person decides",
                    error=f"{type(exc).__name__}: {exc}",
                )
            )
            values[spec.name] = None
            record[spec.name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        values[spec.name] = value
        record[spec.name] = {"value": value, "matched": matched}
    return values, findings, record


def executed_repeat(
    action: ProposedAction,
    identity_params: tuple[str, ...] | None,
    *,
    now: datetime,
    found_by_params: dict[str, str] | None,
) -> dict[str, str] | None:
    """An action of the same agent and type with the same effect, approved or auto-approved and not
    reported as failed, in the same ``context.session_id`` (the last 24 hours without one):
    {"id", "status"}, or None. With equal params it was found by the evaluation's load
    (``found_by_params``); with identity params, the candidates are compared here."""
    if identity_params is None:
        return found_by_params
    identity = identity_of(action.params, identity_params)
    since = now - EXECUTED_WINDOW
    candidates = statements.executed_params(
        action.pk, session=statements.has_session(action.context), executed_since=since, limit=EXECUTED_CANDIDATES
    )
    for pk, status, params in candidates:
        if identity_of(params, identity_params) == identity:
            return {"id": str(pk), "status": status}
    return None
