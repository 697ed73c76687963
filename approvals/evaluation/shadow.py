"""Shadow mode's figures (contract §6.2): what the shadow policy decided beside the live policy, by
label, aggregated in SQL; and the preview a shadow import reports: the recent labelled history
replayed under the candidate (the what-if machinery, on the evidence the gate saw then).

Agreement compares the shadow's decision with the live policy's decision for the same proposal
(recorded with it: a reviewer's later verdict does not change what the policy decided). A shadow
that failed (``error``) disagrees.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import Count, F, Q

from approvals import policy
from approvals.evaluation.whatif import labelled_history, policy_status, stored_proposal
from approvals.models import LabelValue, ShadowPolicy, ShadowResult, ShadowStatus

LABELS = (LabelValue.SAFE, LabelValue.UNSAFE, "unlabelled")
DECISIONS = (policy.AUTO_APPROVED, policy.NEEDS_REVIEW, policy.BLOCKED)
# The unsafe actions the shadow would auto-approve, listed by id (newest first) up to this many; the
# count is exact.
MAX_LISTED = 200


def _label_q(label: str) -> Q:
    if label == "unlabelled":
        return Q(results__action__ground_truth__isnull=True)
    return Q(results__action__ground_truth=label)


def _aggregates() -> dict[str, Count]:
    """Every figure as a conditional COUNT over the shadow's results joined to their actions."""
    counted: dict[str, Count] = {
        "evaluated": Count("results"),
        "agree": Count("results", filter=Q(results__status=F("results__live_status"))),
        "errors": Count("results", filter=Q(results__status=ShadowStatus.ERROR)),
    }
    for label in LABELS:
        for status in (*DECISIONS, ShadowStatus.ERROR):
            counted[f"shadow:{label}:{status}"] = Count("results", filter=_label_q(label) & Q(results__status=status))
        for status in DECISIONS:
            counted[f"live:{label}:{status}"] = Count(
                "results", filter=_label_q(label) & Q(results__live_status=status)
            )
        counted[f"newly:{label}"] = Count(
            "results",
            filter=_label_q(label)
            & Q(results__status=policy.AUTO_APPROVED)
            & ~Q(results__live_status=policy.AUTO_APPROVED),
        )
    return counted


def shadow_figures() -> dict[str, Any] | None:
    """The active shadow policy's figures, or None when shadow mode is off. Two queries: the shadow
    with every count (one GROUP BY over its results and their actions), and the ids of the unsafe
    actions it would auto-approve."""
    shadow = ShadowPolicy.objects.filter(active=True).annotate(**_aggregates()).first()
    if shadow is None:
        return None
    counts: dict[str, int] = {name: getattr(shadow, name) for name in _aggregates()}
    unsafe_ids = [
        str(pk)
        for pk in ShadowResult.objects.filter(
            shadow_policy=shadow, status=policy.AUTO_APPROVED, action__ground_truth=LabelValue.UNSAFE
        )
        .order_by("-created_at", "-id")
        .values_list("action_id", flat=True)[:MAX_LISTED]
    ]
    evaluated, agree = counts["evaluated"], counts["agree"]
    return {
        "shadow_policy_version": shadow.version,
        "created_at": shadow.created_at.isoformat(),
        "created_by": shadow.created_by,
        "action_types": [t.get("name") for t in shadow.document.get("action_types", []) if isinstance(t, dict)],
        "evaluated": evaluated,
        "agree": agree,
        "disagree": evaluated - agree,
        "errors": counts["errors"],
        "agreement_rate": round(agree / evaluated, 6) if evaluated else None,
        "unsafe_auto_approved": counts[f"shadow:{LabelValue.UNSAFE}:{policy.AUTO_APPROVED}"],
        "unsafe_auto_approved_ids": unsafe_ids,
        # What the shadow would do, and what the live policy did, with the same actions, by label.
        "by_label": {
            label: {status: counts[f"shadow:{label}:{status}"] for status in (*DECISIONS, ShadowStatus.ERROR)}
            for label in LABELS
        },
        "live_by_label": {
            label: {status: counts[f"live:{label}:{status}"] for status in DECISIONS} for label in LABELS
        },
        # Auto-approved by the shadow, held or blocked by the live policy.
        "newly_auto_approved": {label: counts[f"newly:{label}"] for label in LABELS},
    }


def shadow_history_preview(specs: list[policy.ActionTypeSpec], *, recent: int | None = None) -> dict[str, Any]:
    """The most recent ``recent`` labelled actions of each type a candidate names, replayed under it:
    the unsafe ones it would newly auto-approve (each named) and how many safe ones (the benefit).
    Newly: the policy in force when the action was evaluated did not auto-approve it. One bounded
    query per type, then the pure engine. Never a reason to refuse a shadow: it acts on nothing."""
    recent = settings.GATE_SAFETY_NET_RECENT if recent is None else recent
    replayed = safe = 0
    unsafe: list[dict[str, Any]] = []
    for spec in specs:
        compiled = policy.compile_policy(spec, 0)
        rows = (
            labelled_history([spec.name])
            .select_related("action_type", "agent")
            .defer("trajectory_raw")
            .order_by("-created_at", "-id")[:recent]
        )
        for action in rows:
            replayed += 1
            if policy_status(action) == policy.AUTO_APPROVED:
                continue
            decision = policy.policy_evaluate(compiled, stored_proposal(action))
            if decision.status != policy.AUTO_APPROVED:
                continue
            if action.ground_truth == LabelValue.UNSAFE:
                unsafe.append(
                    {
                        "id": str(action.id),
                        "action_type": spec.name,
                        "was": policy_status(action),
                        "held_by": policy.failed_checks(action.findings),
                    }
                )
            else:
                safe += 1
    return {
        "recent": recent,
        "replayed": replayed,
        "unsafe_newly_auto_approved": unsafe,
        "safe_newly_auto_approved": safe,
    }
