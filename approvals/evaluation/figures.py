"""Reads for evaluating the gate: figures, per-agent activity, threshold sweeps, rule health, exports.

Everything is aggregated in the database (PostgreSQL is the target). The embedded SQLite mode still
works: where SQL differs (percentiles, quantiles, JSON arrays) it falls back to Python over the few
columns needed.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

from django.db import connection
from django.db.models import (
    Aggregate,
    Case,
    CharField,
    Count,
    Exists,
    F,
    FloatField,
    Func,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.functions import Cast, Concat, TruncDate

from approvals.models import ActionType, Label, LabelValue, ProposedAction, Status

BOUND = "one-sided 95% Clopper\u2013Pearson"
GROUP_BY = ("action_type", "agent", "day")

# Held by the policy for a person: the statuses a held action can reach (a cancelled action was held
# when it had been evaluated: only pending or needs_review actions can be cancelled).
HELD_STATUSES = (Status.NEEDS_REVIEW, Status.APPROVED, Status.REJECTED, Status.EXPIRED)
HELD_Q = Q(status__in=HELD_STATUSES) | Q(status=Status.CANCELLED, evaluated_at__isnull=False)
REVIEWER_DECIDED_Q = Q(status__in=(Status.APPROVED, Status.REJECTED), decided_at__isnull=False)
APPROVED_STATUSES = (Status.APPROVED, Status.AUTO_APPROVED)

MAX_RISK_CANDIDATES = 200
AMOUNT_QUANTILES = 20

# --- statistics ---------------------------------------------------------------------------------


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Lentz's continued fraction for the incomplete beta function (Numerical Recipes, betacf)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the CDF at x of Beta(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    # The continued fraction converges fast below the mean; above it use the symmetry I_x(a,b) = 1 - I_1-x(b,a).
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def clopper_pearson_upper(unsafe: int, n: int, confidence: float = 0.95) -> float | None:
    """Exact one-sided upper bound on a binomial proportion after ``unsafe`` events in ``n`` trials.

    The p with P(X <= unsafe; n, p) = 1 - confidence, i.e. the ``confidence`` quantile of
    Beta(unsafe + 1, n - unsafe), found by bisection. None when n == 0; 1.0 when unsafe == n.
    """
    if not 0 <= unsafe <= n:
        raise ValueError("need 0 <= unsafe <= n")
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be between 0 and 1")
    if n == 0:
        return None
    if unsafe == n:
        return 1.0
    a, b = unsafe + 1.0, float(n - unsafe)
    low, high = 0.0, 1.0
    for _ in range(200):
        mid = (low + high) / 2.0
        if regularized_incomplete_beta(a, b, mid) < confidence:
            low = mid
        else:
            high = mid
        if high - low < 1e-13:
            break
    return high


def percentile_cont(values: list[float], fraction: float) -> float | None:
    """PostgreSQL's percentile_cont (linear interpolation) in Python, for SQLite."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class PercentileCont(Aggregate):
    """``percentile_cont(f) WITHIN GROUP (ORDER BY expr)`` (PostgreSQL only)."""

    function = "percentile_cont"
    name = "PercentileCont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: Any, fraction: float, **extra: Any) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("fraction must be between 0 and 1")
        super().__init__(expression, fraction=repr(float(fraction)), **extra)


class PercentilesDisc(Aggregate):
    """``percentile_disc(ARRAY[...]) WITHIN GROUP (ORDER BY expr)``: several quantiles in one sort."""

    function = "percentile_disc"
    name = "PercentilesDisc"
    template = "%(function)s(ARRAY[%(fractions)s]::double precision[]) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression: Any, fractions: list[float], **extra: Any) -> None:
        from django.contrib.postgres.fields import ArrayField

        text = ", ".join(repr(float(f)) for f in fractions if 0.0 <= f <= 1.0)
        super().__init__(expression, fractions=text, output_field=ArrayField(FloatField()), **extra)


def _seconds_to_decision() -> Func:
    return Func(
        F("decided_at") - F("created_at"),
        template="EXTRACT(EPOCH FROM %(expressions)s)::double precision",
        output_field=FloatField(),
    )


def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


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
    if _is_postgres():
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
        "automation_rate": _rate(by_status[Status.AUTO_APPROVED], not_pending),
        "evaluated": evaluated,
        "held_share": _rate(held, evaluated),
        "blocked_share": _rate(by_status[Status.BLOCKED], evaluated),
        "reviewer_decided": reviewer_decided,
        "reviewer_approve_rate": _rate(by_status[Status.APPROVED], reviewer_decided),
        "reviewer_reject_rate": _rate(by_status[Status.REJECTED], reviewer_decided),
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
    if not _is_postgres():
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
            "held_or_blocked_share": _rate(row["held_or_blocked"], row["evaluated"]),
            "rejected_or_unsafe": row["rejected_or_unsafe"],
            "rejected_or_unsafe_share": _rate(row["rejected_or_unsafe"], proposed),
            "repeated_identical": repeated,
            "repeated_share": _rate(repeated, proposed),
            "outcomes": {
                "approved": row["approved"],
                "reported": reported,
                "succeeded": row["succeeded"],
                "failed": row["failed"],
                "unreported": row["approved"] - reported,
            },
            "success_rate": _rate(row["succeeded"], reported),
        }
        reasons = []
        if proposed >= BUSY_MIN_PROPOSALS:
            share = entry["rejected_or_unsafe_share"]
            if share is not None and share >= BUSY_REJECTED_OR_UNSAFE_SHARE:
                reasons.append(f"{share:.0%} of its proposals were rejected or unsafe")
            if entry["repeated_share"] is not None and entry["repeated_share"] >= BUSY_REPEATED_SHARE:
                reasons.append(f"{repeated} of its {proposed} proposals repeat an identical one")
            rate = entry["success_rate"]
            if rate is not None and reported >= BUSY_MIN_REPORTED and rate < BUSY_MIN_SUCCESS_RATE:
                reasons.append(f"only {row['succeeded']} of {reported} reported outcomes succeeded")
        entry["busy_without_progress"] = bool(reasons)
        entry["reasons"] = reasons
        agents.append(entry)
    agents.sort(key=lambda a: (not a["busy_without_progress"], -a["proposed"], a["agent"]))
    return agents


# --- threshold sweep ----------------------------------------------------------------------------


def sweep_history(action_type: ActionType) -> QuerySet[ProposedAction]:
    """The labelled history a sweep replays: evaluated actions of the type with ground truth.

    ``ground_truth IS NOT NULL`` is the predicate of the partial index action_labelled_idx.
    """
    return (
        ProposedAction.objects.filter(action_type=action_type, ground_truth__isnull=False)
        .exclude(status=Status.PENDING)
        .order_by()
    )


def _eligible_q(action_type: ActionType) -> Q:
    """Rows that steps 5-6 decide and that neither block_min_risk nor min_confidence holds back,
    whatever auto_approve_max_risk and max_auto_amount are."""
    eligible = Q(reached_thresholds=True, risk_score__isnull=False)
    if action_type.block_min_risk is not None:
        eligible &= Q(risk_score__lt=action_type.block_min_risk)
    if action_type.min_confidence is not None:
        eligible &= Q(confidence__gte=action_type.min_confidence)
    return eligible


def _quantiles(values: list[float], count: int) -> list[float]:
    """PostgreSQL's percentile_disc at 0, 1/count, ..., 1 in Python, for SQLite."""
    ordered = sorted(values)
    if not ordered:
        return []
    return [ordered[max(0, math.ceil(i * len(ordered) / count) - 1)] for i in range(count + 1)]


def _amount_candidates(action_type: ActionType) -> list[float]:
    """About 20 quantiles of the amounts in the type's labelled history.

    Read from the columns of action_labelled_idx only (not reached_thresholds or status, which
    are not in it), so that PostgreSQL answers with an index-only scan: these are only candidate
    limits, and the grouped query that counts them applies every condition.
    """
    history = ProposedAction.objects.filter(
        action_type=action_type, ground_truth__isnull=False, amount__isnull=False
    ).order_by()
    fractions = [i / AMOUNT_QUANTILES for i in range(AMOUNT_QUANTILES + 1)]
    if _is_postgres():
        found = history.aggregate(q=PercentilesDisc("amount", fractions))["q"] or []
    else:
        found = _quantiles([a for a in history.values_list("amount", flat=True) if a is not None], AMOUNT_QUANTILES)
    return sorted({float(v) for v in found if v is not None})


def _cap(values: list[float], limit: int, keep: list[float]) -> list[float]:
    """At most about ``limit`` of the sorted ``values``, by quantiles, plus ``keep``."""
    if len(values) > limit:
        values = [values[round(i * (len(values) - 1) / (limit - 1))] for i in range(limit)]
    return sorted(set(values) | set(keep))


def threshold_sweep(
    action_type_name: str,
    *,
    risk_candidates: list[float] | None = None,
    amount_candidates: list[float] | None = None,
) -> dict[str, Any]:
    """Re-apply steps 5-6 of the decision procedure to the type's labelled history under candidate
    (auto_approve_max_risk, max_auto_amount) pairs and recommend the pair that automates the most
    with no unsafe auto-approval.

    Under (r, a) an action is auto-approved iff it reached the thresholds (steps 1-4 neither blocked
    nor held it), risk <= r, risk < block_min_risk (when set), confidence >= min_confidence (when
    set) and, when the type has an amount_path, amount is known and <= a. One grouped query
    (risk, amount bucket, eligibility, ground truth), then cumulative sums over the small grid.
    Raises ActionType.DoesNotExist for an unknown type.
    """
    action_type = ActionType.objects.get(name=action_type_name)
    has_amount = bool(action_type.amount_path)
    eligible = _eligible_q(action_type)
    amounts: list[float] = []
    if has_amount:
        if amount_candidates is None:
            amounts = _amount_candidates(action_type)
        else:
            amounts = sorted({float(a) for a in amount_candidates})
        if action_type.max_auto_amount is not None and float(action_type.max_auto_amount) not in amounts:
            amounts = sorted([*amounts, float(action_type.max_auto_amount)])
    bucket: Any = Value(0)
    if has_amount:
        # -1: no amount (never auto-approved when amounts count); i: amounts[i-1] < amount <= amounts[i].
        whens = [When(amount__isnull=True, then=Value(-1))]
        whens += [When(amount__lte=limit, then=Value(i)) for i, limit in enumerate(amounts)]
        bucket = Case(*whens, default=Value(len(amounts)), output_field=IntegerField())
    rows = list(
        sweep_history(action_type)
        .annotate(
            is_eligible=Case(When(eligible, then=Value(1)), default=Value(0), output_field=IntegerField()),
            bucket=bucket,
        )
        .values("is_eligible", "risk_score", "bucket", "ground_truth")
        .annotate(n=Count("id"))
        .order_by()
    )
    safe = sum(r["n"] for r in rows if r["ground_truth"] == LabelValue.SAFE)
    unsafe = sum(r["n"] for r in rows if r["ground_truth"] == LabelValue.UNSAFE)
    labelled = safe + unsafe
    grid_rows = [r for r in rows if r["is_eligible"]]

    current_risk = float(action_type.auto_approve_max_risk)
    if risk_candidates is not None:
        risks = sorted({float(r) for r in risk_candidates})
    else:
        observed = sorted({float(r["risk_score"]) for r in grid_rows})
        risks = _cap(observed, MAX_RISK_CANDIDATES, [current_risk, 0.0])

    # counts[g][i][j]: eligible rows of ground truth g whose risk needs r >= risks[i] and whose
    # amount bucket needs a >= amounts[j]; rows above every candidate are left out.
    width = len(amounts) if has_amount else 1
    counts = {g: [[0] * width for _ in risks] for g in (LabelValue.SAFE, LabelValue.UNSAFE)}
    for row in grid_rows:
        i = bisect.bisect_left(risks, row["risk_score"])
        j = row["bucket"]
        if i >= len(risks) or j < 0 or j >= width:
            continue
        counts[row["ground_truth"]][i][j] += row["n"]
    cumulative = {g: _cumulate(grid) for g, grid in counts.items()}

    def point(i: int, j: int) -> dict[str, Any]:
        auto_safe = cumulative[LabelValue.SAFE][i][j]
        auto_unsafe = cumulative[LabelValue.UNSAFE][i][j]
        auto = auto_safe + auto_unsafe
        return {
            "auto_approve_max_risk": risks[i],
            "max_auto_amount": amounts[j] if has_amount else None,
            "auto_approved": auto,
            "auto_safe": auto_safe,
            "auto_unsafe": auto_unsafe,
            "automation_rate": _rate(auto, labelled),
            "safe_automation_rate": _rate(auto_safe, safe),
        }

    points = [point(i, j) for i in range(len(risks)) for j in range(width)]
    current = _current_point(action_type, amounts, grid_rows, labelled, safe)

    best = None
    for candidate in points:  # ordered by risk, then amount: the first of a tie is the lowest
        if (
            candidate["auto_unsafe"] == 0
            and candidate["auto_approved"] > 0
            and (best is None or candidate["auto_approved"] > best["auto_approved"])
        ):
            best = candidate
    recommendation = None
    if best is not None:
        upper = clopper_pearson_upper(0, best["auto_approved"])
        assert upper is not None
        recommendation = {
            "auto_approve_max_risk": best["auto_approve_max_risk"],
            "max_auto_amount": best["max_auto_amount"],
            "automation_rate": best["automation_rate"],
            "safe_automation_rate": best["safe_automation_rate"],
            "auto_approved": best["auto_approved"],
            "unsafe_auto_approved": 0,
            "unsafe_rate_upper_95": round(upper, 6),
            "bound": BOUND,
            "note": (
                f"No unsafe action among the {best['auto_approved']} labelled actions these thresholds "
                f"auto-approve; with 95% confidence fewer than {upper:.2%} of such actions are unsafe, "
                "as far as the labelled history is like what comes next (reviewed actions are labelled "
                "more often than auto-approved ones)."
            ),
        }
    return {
        "action_type": action_type.name,
        "labelled": labelled,
        "safe": safe,
        "unsafe": unsafe,
        "current": {
            "auto_approve_max_risk": current_risk,
            "max_auto_amount": action_type.max_auto_amount,
            "point": current,
        },
        "points": points,
        "recommendation": recommendation,
    }


def _cumulate(grid: list[list[int]]) -> list[list[int]]:
    """2-D prefix sums: out[i][j] = sum of grid[k][m] for k <= i, m <= j."""
    out = [row[:] for row in grid]
    for i, row in enumerate(out):
        for j in range(len(row)):
            row[j] += (out[i - 1][j] if i else 0) + (row[j - 1] if j else 0) - (out[i - 1][j - 1] if i and j else 0)
    return out


def _current_point(
    action_type: ActionType, amounts: list[float], grid_rows: list[dict[str, Any]], labelled: int, safe: int
) -> dict[str, Any]:
    """The type's thresholds as they stand. Its max_auto_amount is one of ``amounts``; without one
    the amount is not checked at all (engine step 6)."""
    limit = action_type.max_auto_amount
    checks_amount = bool(action_type.amount_path) and limit is not None
    top_bucket = amounts.index(float(limit)) if checks_amount and limit is not None else 0
    auto = {LabelValue.SAFE: 0, LabelValue.UNSAFE: 0}
    for row in grid_rows:
        if row["risk_score"] > action_type.auto_approve_max_risk:
            continue
        if checks_amount and not 0 <= row["bucket"] <= top_bucket:
            continue
        auto[row["ground_truth"]] += row["n"]
    total = auto[LabelValue.SAFE] + auto[LabelValue.UNSAFE]
    return {
        "auto_approve_max_risk": action_type.auto_approve_max_risk,
        "max_auto_amount": limit,
        "auto_approved": total,
        "auto_safe": auto[LabelValue.SAFE],
        "auto_unsafe": auto[LabelValue.UNSAFE],
        "automation_rate": _rate(total, labelled),
        "safe_automation_rate": _rate(auto[LabelValue.SAFE], safe),
    }


# --- rule health --------------------------------------------------------------------------------

FAILED_OUTCOMES = ("fail", "error")

RULE_HEALTH_SQL = """
SELECT finding ->> 'rule' AS rule,
       COUNT(*) AS evaluated,
       COUNT(*) FILTER (WHERE finding ->> 'outcome' IN ('fail', 'error')) AS failed,
       COUNT(*) FILTER (WHERE finding ->> 'outcome' IN ('fail', 'error') AND a.ground_truth = %s) AS failed_safe,
       COUNT(*) FILTER (WHERE finding ->> 'outcome' IN ('fail', 'error') AND a.ground_truth = %s) AS failed_unsafe,
       COUNT(*) FILTER (WHERE finding ->> 'outcome' = 'pass' AND a.ground_truth = %s) AS passed_unsafe
FROM {table} AS a
CROSS JOIN LATERAL jsonb_array_elements(
    CASE WHEN jsonb_typeof(a.findings) = 'array' THEN a.findings ELSE '[]'::jsonb END
) AS finding
WHERE a.action_type_id = %s AND a.ground_truth IS NOT NULL AND finding ->> 'rule' IS NOT NULL
GROUP BY 1
"""


def _rule_counts_python(action_type: ActionType) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(("evaluated", "failed", "failed_safe", "failed_unsafe", "passed_unsafe"), 0)
    )
    history = ProposedAction.objects.filter(action_type=action_type, ground_truth__isnull=False)
    for findings, truth in history.values_list("findings", "ground_truth").iterator(chunk_size=2000):
        for finding in findings if isinstance(findings, list) else []:
            name = finding.get("rule") if isinstance(finding, dict) else None
            if not isinstance(name, str):
                continue
            row = counts[name]
            row["evaluated"] += 1
            if finding.get("outcome") in FAILED_OUTCOMES:
                row["failed"] += 1
                row["failed_safe" if truth == LabelValue.SAFE else "failed_unsafe"] += 1
            elif finding.get("outcome") == "pass" and truth == LabelValue.UNSAFE:
                row["passed_unsafe"] += 1
    return counts


def rule_health(action_type_name: str) -> list[dict[str, Any]]:
    """Per check in the findings of the type's actions with ground truth: how often it failed
    (outcome fail or error) on safe and on unsafe actions, how often it passed an unsafe one (harm
    it missed), and its precision (failed_unsafe / failed). Most failures first.

    Raises ActionType.DoesNotExist for an unknown type.
    """
    action_type = ActionType.objects.get(name=action_type_name)
    if _is_postgres():
        sql = RULE_HEALTH_SQL.format(table=connection.ops.quote_name(ProposedAction._meta.db_table))
        with connection.cursor() as cursor:
            cursor.execute(sql, [LabelValue.SAFE, LabelValue.UNSAFE, LabelValue.UNSAFE, action_type.pk])
            columns = [column[0] for column in cursor.description or ()]
            counts = {row[0]: dict(zip(columns[1:], row[1:], strict=True)) for row in cursor.fetchall()}
    else:
        counts = _rule_counts_python(action_type)
    rules = [
        {"rule": name, **row, "precision": _rate(row["failed_unsafe"], row["failed"])} for name, row in counts.items()
    ]
    rules.sort(key=lambda r: (-r["failed"], r["rule"]))
    return rules


# --- exports ------------------------------------------------------------------------------------


def labelled_actions(
    *, action_type: str | None = None, since: datetime | None = None, until: datetime | None = None
) -> QuerySet[ProposedAction]:
    """Actions with ground truth, oldest first, with their labels (newest first)."""
    return (
        actions_filtered(action_type=action_type, since=since, until=until)
        .filter(ground_truth__isnull=False)
        .select_related("action_type", "agent")
        .prefetch_related(Prefetch("labels", queryset=Label.objects.order_by("-created_at", "-id")))
        .order_by("created_at", "id")
    )


def label_tags(action: ProposedAction) -> list[str]:
    """The tags of all the action's labels, newest label first, each tag once."""
    tags: dict[str, None] = {}
    for label in action.labels.all():
        for tag in label.tags if isinstance(label.tags, list) else []:
            tags.setdefault(str(tag), None)
    return list(tags)


def labelled_export_rows(
    *, action_type: str | None = None, since: datetime | None = None, until: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """Lines for ``manage.py replay``: the proposal as received and its ground truth as ``label``."""
    for action in labelled_actions(action_type=action_type, since=since, until=until).iterator(chunk_size=1000):
        yield {
            "id": str(action.id),
            "action_type": action.action_type.name,
            "agent": {"name": action.agent.name},
            "params": action.params,
            "trajectory": action.trajectory_raw if action.trajectory_raw is not None else action.trajectory,
            "confidence": action.confidence,
            "context": action.context,
            "label": action.ground_truth,
            "status": action.status,
            "tags": label_tags(action),
        }


CSV_COLUMNS = (
    "id",
    "action_type",
    "agent",
    "status",
    "risk_score",
    "amount",
    "confidence",
    "ground_truth",
    "tags",
    "created_at",
    "decided_at",
)


def labelled_csv_rows(
    *, action_type: str | None = None, since: datetime | None = None, until: datetime | None = None
) -> Iterator[list[Any]]:
    """The same actions as labelled_export_rows, one CSV row each (tags joined by ';'), after a header."""
    yield list(CSV_COLUMNS)
    for action in labelled_actions(action_type=action_type, since=since, until=until).iterator(chunk_size=1000):
        yield [
            str(action.id),
            action.action_type.name,
            action.agent.name,
            action.status,
            "" if action.risk_score is None else action.risk_score,
            "" if action.amount is None else action.amount,
            "" if action.confidence is None else action.confidence,
            action.ground_truth,
            ";".join(label_tags(action)),
            action.created_at.isoformat(),
            action.decided_at.isoformat() if action.decided_at else "",
        ]
