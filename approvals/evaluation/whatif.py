"""What-if: a candidate policy replayed over the labelled history before it goes live.

The replay runs on Celery in slices (each well inside the task time limit and the broker's
visibility timeout); each slice evaluates the next actions after a cursor, adds them to the run's
tallies and saves cursor, tallies and progress in one transaction, so that a slice that runs twice
or dies half-way counts nothing twice.
"""

from __future__ import annotations

import time
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from approvals import policy
from approvals.evidence.services import stored_evidence
from approvals.gate.selectors import proposal_of
from approvals.models import ProposedAction, Status, WhatIfRun

SLICE_SECONDS = 8.0
SLICE_ROWS = 2000
MAX_EXAMPLES = 200
OUTCOMES = (policy.AUTO_APPROVED, policy.NEEDS_REVIEW, policy.BLOCKED)


def policy_status(action: ProposedAction) -> str:
    """What the policy in force decided for a stored action, whatever a reviewer did after."""
    if action.status in (Status.AUTO_APPROVED, Status.BLOCKED):
        return action.status
    return policy.NEEDS_REVIEW


def labelled_history(type_names: list[str]) -> Any:
    return ProposedAction.objects.filter(
        action_type__name__in=type_names, ground_truth__isnull=False, evaluated_at__isnull=False
    )


def _empty_result(type_names: list[str]) -> dict[str, Any]:
    return {
        "cursor": None,
        # transitions[type][label]["old->new"] = count
        "transitions": {name: {} for name in type_names},
        "examples": [],
    }


def replay_proposal(action: ProposedAction) -> policy.Proposal:
    """A stored action as a replay judges it under another policy: what-if runs, the shadow's preview."""
    # The built-in repeat check replays what was found when the action was evaluated: the history
    # is judged as it stood then, not as it stands now.
    # So are the evidence the gate gathered (what each lookup answered then, each history value) and
    # the same effect found already approved: a candidate policy is judged on what the gate saw.
    failed = {f.get("rule"): f for f in action.findings if f.get("outcome") == "fail"}
    repeat, executed = failed.get("repeat_of_refused"), failed.get("repeat_of_executed")
    proposal = proposal_of(
        action,
        agent_name=action.agent.name,
        now=action.evaluated_at or action.created_at,
        refused_repeat_of={"id": repeat.get("repeat_of", "?"), "status": "refused"} if repeat else None,
    )
    return stored_evidence(
        proposal,
        action.evidence,
        executed_repeat_of={"id": executed["repeat_of"], "status": "approved"}
        if executed and "repeat_of" in executed
        else None,
    )


def whatif_prepare(run: WhatIfRun) -> None:
    specs = policy.parse_document(run.document)
    names = [spec.name for spec in specs]
    WhatIfRun.objects.filter(pk=run.pk, state=WhatIfRun.State.QUEUED).update(
        state=WhatIfRun.State.RUNNING, total=labelled_history(names).count(), result=_empty_result(names)
    )


def whatif_step(run_id: int) -> bool:
    """Replay the next slice of a run; True when more is left."""
    run = WhatIfRun.objects.filter(pk=run_id).first()
    if run is None or run.state in (WhatIfRun.State.DONE, WhatIfRun.State.FAILED):
        return False
    if run.state == WhatIfRun.State.QUEUED:
        whatif_prepare(run)
        run.refresh_from_db()
    specs = policy.parse_document(run.document)
    compiled = {spec.name: policy.compile_policy(spec, 0) for spec in specs}
    result = run.result or _empty_result(list(compiled))
    queryset = labelled_history(list(compiled)).select_related("action_type", "agent").order_by("created_at", "id")
    cursor = result.get("cursor")
    if cursor:
        queryset = queryset.filter(
            Q(created_at__gt=cursor["created_at"]) | Q(created_at=cursor["created_at"], id__gt=cursor["id"])
        )
    started = time.monotonic()
    processed = 0
    last: ProposedAction | None = None
    for action in queryset[:SLICE_ROWS]:
        decision = policy.policy_evaluate(compiled[action.action_type.name], replay_proposal(action))
        old, new = policy_status(action), decision.status
        label = action.ground_truth or "unlabelled"
        per_label = result["transitions"].setdefault(action.action_type.name, {}).setdefault(label, {})
        key = f"{old}->{new}"
        per_label[key] = per_label.get(key, 0) + 1
        if old != new and len(result["examples"]) < MAX_EXAMPLES:
            result["examples"].append(
                {
                    "id": str(action.id),
                    "action_type": action.action_type.name,
                    "label": label,
                    "before": old,
                    "after": new,
                    "failed": policy.failed_checks(decision.findings),
                }
            )
        processed += 1
        last = action
        if time.monotonic() - started > SLICE_SECONDS:
            break
    with transaction.atomic():
        locked = WhatIfRun.objects.select_for_update().get(pk=run_id)
        if (locked.result or {}).get("cursor") != cursor or locked.state != WhatIfRun.State.RUNNING:
            return False  # another delivery of this slice got here first
        if last is not None:
            result["cursor"] = {"created_at": last.created_at.isoformat(), "id": str(last.id)}
            locked.processed += processed
        more = processed == SLICE_ROWS or (last is not None and time.monotonic() - started > SLICE_SECONDS)
        if not more:
            locked.state = WhatIfRun.State.DONE
            locked.finished_at = timezone.now()
            result["summary"] = whatif_summary(result["transitions"])
        locked.result = result
        locked.save(update_fields=["result", "processed", "state", "finished_at"])
    return more


def whatif_fail(run_id: int, error: str) -> None:
    WhatIfRun.objects.filter(pk=run_id).exclude(state=WhatIfRun.State.DONE).update(
        state=WhatIfRun.State.FAILED, error=error[:2000], finished_at=timezone.now()
    )


def whatif_summary(transitions: dict[str, dict[str, dict[str, int]]]) -> dict[str, Any]:
    """Newly auto-approved / held / blocked, by label, overall and per type; automation before and after."""

    def tally(per_label: dict[str, dict[str, int]]) -> dict[str, Any]:
        changed: dict[str, dict[str, int]] = {f"newly_{name}": {} for name in ("auto_approved", "held", "blocked")}
        before = dict.fromkeys(OUTCOMES, 0)
        after = dict.fromkeys(OUTCOMES, 0)
        unsafe_before = unsafe_after = total = 0
        for label, moves in per_label.items():
            for key, n in moves.items():
                old, new = key.split("->")
                total += n
                before[old] += n
                after[new] += n
                if label == "unsafe":
                    unsafe_before += n if old == policy.AUTO_APPROVED else 0
                    unsafe_after += n if new == policy.AUTO_APPROVED else 0
                if old != new:
                    bucket = {
                        policy.AUTO_APPROVED: "newly_auto_approved",
                        policy.NEEDS_REVIEW: "newly_held",
                        policy.BLOCKED: "newly_blocked",
                    }[new]
                    changed[bucket][label] = changed[bucket].get(label, 0) + n
        return {
            "total": total,
            **changed,
            "before": before,
            "after": after,
            "automation_rate_before": round(before[policy.AUTO_APPROVED] / total, 6) if total else None,
            "automation_rate_after": round(after[policy.AUTO_APPROVED] / total, 6) if total else None,
            "unsafe_auto_approved_before": unsafe_before,
            "unsafe_auto_approved_after": unsafe_after,
        }

    merged: dict[str, dict[str, int]] = {}
    for per_label in transitions.values():
        for label, moves in per_label.items():
            for key, n in moves.items():
                merged.setdefault(label, {})[key] = merged.setdefault(label, {}).get(key, 0) + n
    return {"overall": tally(merged), "per_action_type": {name: tally(t) for name, t in sorted(transitions.items())}}
