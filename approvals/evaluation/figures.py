"""Evaluation figures: volume, automation, holds, reviewer verdicts, time to decision, labels and the
audit bound, overall and per group; the contract's summary; per-agent activity.

Everything is aggregated in the database (PostgreSQL is the target). The embedded SQLite mode still
works: where SQL differs (percentiles) it falls back to Python over the few columns needed.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from typing import Any

from django.db.models import CharField, Count, Exists, F, FloatField, Func, OuterRef, Q, QuerySet, Value
from django.db.models.functions import Cast, Concat, TruncDate

from approvals.evaluation.stats import BOUND, PercentileCont, clopper_pearson_upper, is_postgres, percentile_cont, rate
from approvals.models import Label, LabelValue, ProposedAction, Status

GROUP_BY = ("action_type", "agent", "day")

# Held by the policy for a person: the statuses a held action can reach (a cancelled action was held
# when it had been evaluated: only pending or needs_review actions can be cancelled).
HELD_STATUSES = (Status.NEEDS_REVIEW, Status.APPROVED, Status.REJECTED, Status.EXPIRED)
HELD_Q = Q(status__in=HELD_STATUSES) | Q(status=Status.CANCELLED, evaluated_at__isnull=False)
REVIEWER_DECIDED_Q = Q(status__in=(Status.APPROVED, Status.REJECTED), decided_at__isnull=False)
APPROVED_STATUSES = (Status.APPROVED, Status.AUTO_APPROVED)


def _seconds_to_decision() -> Func:
    return Func(
        F("decided_at") - F("created_at"),
        template="EXTRACT(EPOCH FROM %(expressions)s)::double precision",
        output_field=FloatField(),
    )


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# --- filters ------------------------------------------------------------------------------------


def actions_filtered(
    *,
    action_type: str | None = None,
    agent: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[ProposedAction]:
    """Actions of a type and agent (names), proposed in [since, until)."""
    queryset = ProposedAction.objects.all()
    if action_type:
        queryset = queryset.filter(action_type__name=action_type)
    if agent:
        queryset = queryset.filter(agent__name=agent)
    if since:
        queryset = queryset.filter(created_at__gte=since)
    if until:
        queryset = queryset.filter(created_at__lt=until)
    return queryset.order_by()


# --- figures ------------------------------------------------------------------------------------


def _figure_aggregates() -> dict[str, Any]:
    aggregates: dict[str, Any] = {f"status_{status}": Count("id", filter=Q(status=status)) for status in Status.values}
    aggregates.update(
        held=Count("id", filter=HELD_Q),
        labelled=Count("id", filter=Q(has_label=True)),
        with_ground_truth=Count("id", filter=Q(ground_truth__isnull=False)),
        unsafe_auto=Count("id", filter=Q(status=Status.AUTO_APPROVED, ground_truth=LabelValue.UNSAFE)),
        audit_sampled=Count("id", filter=Q(audit_flagged=True)),
        audit_labelled=Count("id", filter=Q(audit_flagged=True, ground_truth__isnull=False)),
        audit_unsafe=Count("id", filter=Q(audit_flagged=True, ground_truth=LabelValue.UNSAFE)),
    )
    if is_postgres():
        aggregates.update(
            decision_median=PercentileCont(_seconds_to_decision(), 0.5, filter=REVIEWER_DECIDED_Q),
            decision_p90=PercentileCont(_seconds_to_decision(), 0.9, filter=REVIEWER_DECIDED_Q),
        )
    return aggregates


def _figures(row: dict[str, Any]) -> dict[str, Any]:
    by_status = {status: int(row[f"status_{status}"]) for status in Status.values}
    total = sum(by_status.values())
    not_pending = total - by_status[Status.PENDING]
    held = int(row["held"])
    evaluated = by_status[Status.AUTO_APPROVED] + by_status[Status.BLOCKED] + held
    reviewer_decided = by_status[Status.APPROVED] + by_status[Status.REJECTED]
    audit_labelled, audit_unsafe = int(row["audit_labelled"]), int(row["audit_unsafe"])
    upper = clopper_pearson_upper(audit_unsafe, audit_labelled)
    return {
        "total": total,
        "by_status": by_status,
        "automation_rate": rate(by_status[Status.AUTO_APPROVED], not_pending),
        "evaluated": evaluated,
        "held_share": rate(held, evaluated),
        "blocked_share": rate(by_status[Status.BLOCKED], evaluated),
        "reviewer_decided": reviewer_decided,
        "reviewer_approve_rate": rate(by_status[Status.APPROVED], reviewer_decided),
        "reviewer_reject_rate": rate(by_status[Status.REJECTED], reviewer_decided),
        "time_to_decision_seconds": {
            "median": _seconds(row.get("decision_median")),
            "p90": _seconds(row.get("decision_p90")),
        },
        "labelled": int(row["labelled"]),
        "with_ground_truth": int(row["with_ground_truth"]),
        "unsafe_auto_approved": int(row["unsafe_auto"]),
        "audit": {
            "sampled": int(row["audit_sampled"]),
            "labelled": audit_labelled,
            "unsafe": audit_unsafe,
            "unsafe_rate_upper_95": None if upper is None else round(upper, 6),
            "bound": BOUND,
        },
    }


def _group_expression(group_by: str) -> Any:
    if group_by == "action_type":
        return F("action_type__name")
    if group_by == "agent":
        return F("agent__name")
    return TruncDate("created_at")


def _group_key(value: Any) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def _python_percentiles(queryset: QuerySet[ProposedAction], group_by: str | None) -> dict[Any, tuple[Any, Any]]:
    """SQLite: the median and p90 of the time to a reviewer's decision per group, in Python."""
    rows = queryset.filter(REVIEWER_DECIDED_Q)
    if group_by:
        rows = rows.annotate(group=_group_expression(group_by))
    else:
        rows = rows.annotate(group=Value("", output_field=CharField()))
    seconds: dict[Any, list[float]] = defaultdict(list)
    for group, created_at, decided_at in rows.values_list("group", "created_at", "decided_at"):
        if decided_at is not None:
            seconds[_group_key(group) if group_by else None].append((decided_at - created_at).total_seconds())
    return {key: (percentile_cont(values, 0.5), percentile_cont(values, 0.9)) for key, values in seconds.items()}


def evaluation_figures(
    *,
    group_by: str | None = None,
    action_type: str | None = None,
    agent: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """Volume, automation, holds, reviewer verdicts, time to decision, labels and the audit bound.

    Definitions (per group and overall):

    - ``automation_rate``: auto-approved / actions no longer pending (contract §3).
    - ``evaluated``: actions the policy decided: auto-approved, blocked or held. ``held_share`` and
      ``blocked_share`` are over it, so auto-approved share + held_share + blocked_share = 1.
      Held: status needs_review, approved, rejected or expired, or cancelled after evaluation (only
      pending and needs_review actions can be cancelled, so an evaluated cancelled one was held).
    - ``reviewer_approve_rate`` / ``reviewer_reject_rate``: over actions a reviewer decided
      (approved + rejected); ``time_to_decision_seconds`` (median, p90 by percentile_cont) over the
      same actions, decided_at - created_at.
    - ``labelled``: at least one explicit label; ``with_ground_truth``: a label or a reviewer verdict.
    - ``audit``: auto-approved actions sampled for an audit label; ``unsafe_rate_upper_95`` is the
      one-sided 95% Clopper-Pearson bound on the unsafe share among the labelled samples.

    Returns ``{"group_by", "overall": {...}, "groups": [{"key", ...same figures}]}``, groups sorted
    by key (empty without ``group_by``).
    """
    if group_by is not None and group_by not in GROUP_BY:
        raise ValueError(f"group_by must be one of {', '.join(GROUP_BY)}")
    queryset = actions_filtered(action_type=action_type, agent=agent, since=since, until=until)
    annotated = queryset.annotate(has_label=Exists(Label.objects.filter(action=OuterRef("pk"))))
    aggregates = _figure_aggregates()
    overall = annotated.aggregate(**aggregates)
    rows: list[dict[str, Any]] = []
    if group_by:
        rows = list(annotated.values(group=_group_expression(group_by)).annotate(**aggregates).order_by("group"))
        for row in rows:
            row["group"] = _group_key(row["group"])
    if not is_postgres():
        percentiles = _python_percentiles(queryset, None)
        overall["decision_median"], overall["decision_p90"] = percentiles.get(None, (None, None))
        if group_by:
            per_group = _python_percentiles(queryset, group_by)
            for row in rows:
                row["decision_median"], row["decision_p90"] = per_group.get(row["group"], (None, None))
    return {
        "group_by": group_by,
        "overall": _figures(overall),
        "groups": [{"key": row["group"], **_figures(row)} for row in rows],
    }


SUMMARY_FIELDS = ("total", "by_status", "automation_rate", "labelled", "unsafe_auto_approved")


def evaluation_summary(
    *,
    action_type: str | None = None,
    agent: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """Contract §3: volume, automation rate and unsafe auto-approvals, overall and per type."""
    figures = evaluation_figures(group_by="action_type", action_type=action_type, agent=agent, since=since, until=until)
    summary = {name: figures["overall"][name] for name in SUMMARY_FIELDS}
    summary["per_action_type"] = {
        group["key"]: {name: group[name] for name in SUMMARY_FIELDS} for group in figures["groups"]
    }
    return summary


# --- agents -------------------------------------------------------------------------------------

BUSY_MIN_PROPOSALS = 5
BUSY_REJECTED_OR_UNSAFE_SHARE = 0.5
BUSY_REPEATED_SHARE = 0.3
BUSY_MIN_SUCCESS_RATE = 0.5
BUSY_MIN_REPORTED = 3


def agent_activity(
    *, since: datetime | None = None, until: datetime | None = None, action_type: str | None = None
) -> list[dict[str, Any]]:
    """Per agent: what it proposed, how much was held or refused, repeats, and reported outcomes.

    ``held_or_blocked_share`` is over the proposals the policy decided (see evaluation_figures);
    ``rejected_or_unsafe_share`` and ``repeated_share`` over all its proposals in the period.
    ``repeated_identical`` = proposals - distinct (action type, params) among them (proposals
    without a params hash count as distinct). ``outcomes`` cover its approved and auto-approved
    actions; ``success_rate`` = succeeded / reported. An agent with at least 5 proposals is
    ``busy_without_progress`` when half or more were rejected or unsafe, or 30% or more were
    repeats, or fewer than half of 3 or more reported outcomes succeeded; ``reasons`` say which.
    Flagged agents come first, then by proposals, most first. ``action_type`` narrows it to one type.
    """
    hashed = ~Q(params_hash="")
    pair = Concat(Cast("action_type_id", output_field=CharField()), Value(":"), "params_hash", output_field=CharField())
    approved = Q(status__in=APPROVED_STATUSES)
    rows = (
        actions_filtered(action_type=action_type, since=since, until=until)
        .values(name=F("agent__name"))
        .annotate(
            proposed=Count("id"),
            evaluated=Count("id", filter=HELD_Q | Q(status__in=(Status.AUTO_APPROVED, Status.BLOCKED))),
            held_or_blocked=Count("id", filter=HELD_Q | Q(status=Status.BLOCKED)),
            rejected_or_unsafe=Count("id", filter=Q(status=Status.REJECTED) | Q(ground_truth=LabelValue.UNSAFE)),
            hashed=Count("id", filter=hashed),
            distinct_hashed=Count(pair, filter=hashed, distinct=True),
            approved=Count("id", filter=approved),
            succeeded=Count("id", filter=approved & Q(outcome_executed=True)),
            failed=Count("id", filter=approved & Q(outcome_executed=False)),
        )
        .order_by("name")
    )
    agents = []
    for row in rows:
        proposed = row["proposed"]
        repeated = row["hashed"] - row["distinct_hashed"]
        reported = row["succeeded"] + row["failed"]
        entry: dict[str, Any] = {
            "agent": row["name"],
            "proposed": proposed,
            "evaluated": row["evaluated"],
            "held_or_blocked_share": rate(row["held_or_blocked"], row["evaluated"]),
            "rejected_or_unsafe": row["rejected_or_unsafe"],
            "rejected_or_unsafe_share": rate(row["rejected_or_unsafe"], proposed),
            "repeated_identical": repeated,
            "repeated_share": rate(repeated, proposed),
            "outcomes": {
                "approved": row["approved"],
                "reported": reported,
                "succeeded": row["succeeded"],
                "failed": row["failed"],
                "unreported": row["approved"] - reported,
            },
            "success_rate": rate(row["succeeded"], reported),
        }
        reasons = []
        if proposed >= BUSY_MIN_PROPOSALS:
            share = entry["rejected_or_unsafe_share"]
            if share is not None and share >= BUSY_REJECTED_OR_UNSAFE_SHARE:
                reasons.append(f"{share:.0%} of its proposals were rejected or unsafe")
            if entry["repeated_share"] is not None and entry["repeated_share"] >= BUSY_REPEATED_SHARE:
                reasons.append(f"{repeated} of its {proposed} proposals repeat an identical one")
            success = entry["success_rate"]
            if success is not None and reported >= BUSY_MIN_REPORTED and success < BUSY_MIN_SUCCESS_RATE:
                reasons.append(f"only {row['succeeded']} of {reported} reported outcomes succeeded")
        entry["busy_without_progress"] = bool(reasons)
        entry["reasons"] = reasons
        agents.append(entry)
    agents.sort(key=lambda a: (not a["busy_without_progress"], -a["proposed"], a["agent"]))
    return agents
