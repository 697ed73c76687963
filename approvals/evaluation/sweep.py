"""The threshold sweep: a type's labelled history replayed under candidate (auto_approve_max_risk,
max_auto_amount) pairs, and the pair that automates the most with no unsafe auto-approval.
"""

from __future__ import annotations

import bisect
from typing import Any

from django.db.models import Case, Count, IntegerField, Q, QuerySet, Value, When

from approvals.evaluation.stats import BOUND, PercentilesDisc, clopper_pearson_upper, is_postgres, quantiles, rate
from approvals.models import ActionType, LabelValue, ProposedAction, Status

MAX_RISK_CANDIDATES = 200
AMOUNT_QUANTILES = 20


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
    if is_postgres():
        found = history.aggregate(q=PercentilesDisc("amount", fractions))["q"] or []
    else:
        found = quantiles([a for a in history.values_list("amount", flat=True) if a is not None], AMOUNT_QUANTILES)
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
            "automation_rate": rate(auto, labelled),
            "safe_automation_rate": rate(auto_safe, safe),
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
        "automation_rate": rate(total, labelled),
        "safe_automation_rate": rate(auto[LabelValue.SAFE], safe),
    }
