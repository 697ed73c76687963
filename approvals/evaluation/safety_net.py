"""The labelled history as a safety net for policy changes (contract §6.2).

Before a change goes live (an import, an admin's save of a type, applied thresholds), the most
recent labelled actions of each changed type (``GATE_SAFETY_NET_RECENT``, 500 by default) are
replayed under the new policy with the what-if machinery: each action's stored proposal and the
evidence the gate saw when it evaluated it (``whatif.stored_proposal``). An action the new policy
would auto-approve and the live policy, replayed on the same proposal, would not is *newly*
auto-approved (for a type with no live policy, one its stored decision did not auto-approve). The
change is refused when any newly auto-approved action is labelled unsafe, naming each, unless the
caller accepts them explicitly; the newly auto-approved safe actions are counted beside them (what
the change gains).

One bounded query per type reads the history; the rest is the pure engine. The live policy is only
evaluated for the actions the new one would auto-approve, and a type whose policy the change leaves
as it is (an import of a whole file that changes one type) is not replayed.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable, Set
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from approvals import policy
from approvals.errors import UnsafePolicyChange
from approvals.evaluation.whatif import labelled_history, policy_status, stored_proposal
from approvals.models import LabelValue, ProposedAction

SUMMARY_CHARS = 120


@dataclass(frozen=True)
class TypeChange:
    """One type's policy as the change would make it, beside the live one (None: a new type)."""

    name: str
    candidate: policy.CompiledPolicy
    live: policy.CompiledPolicy | None


@dataclass(frozen=True)
class UnsafeCase:
    """An action labelled unsafe that the change would newly auto-approve."""

    id: str
    action_type: str
    summary: str
    live_status: str  # what the live policy decides for it (or, with none, what was decided)

    def as_dict(self) -> dict[str, str]:
        return {
            "id": self.id,
            "action_type": self.action_type,
            "summary": self.summary,
            "live_status": self.live_status,
        }

    def line(self) -> str:
        return f"{self.id} ({self.action_type}, now {self.live_status}): {self.summary}"


@dataclass(frozen=True)
class SafetyNetReport:
    replayed: int
    unsafe: tuple[UnsafeCase, ...] = ()
    safe_newly_auto_approved: int = 0
    seconds: float = 0.0
    per_type: dict[str, int] = field(default_factory=dict)  # actions replayed, by type

    def audit_data(self, accepted: Iterable[UnsafeCase] = ()) -> dict[str, Any]:
        return {
            "replayed": self.replayed,
            "safe_newly_auto_approved": self.safe_newly_auto_approved,
            "unsafe_newly_auto_approved_accepted": [case.id for case in accepted],
        }


def _summary(action: ProposedAction) -> str:
    text = json.dumps(action.params, sort_keys=True, ensure_ascii=False, separators=(", ", ": "))
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "\u2026"


def same_decisions(live: policy.ActionTypeSpec, candidate: policy.ActionTypeSpec) -> bool:
    """The two decide every proposal alike: equal but for their description and tests."""
    return dataclasses.replace(live, description="", tests=()) == dataclasses.replace(
        candidate, description="", tests=()
    )


def recent_labelled(name: str, limit: int) -> list[ProposedAction]:
    """The type's most recent ``limit`` labelled, evaluated actions: one query."""
    queryset = (
        labelled_history([name])
        .select_related("action_type", "agent")
        .defer("trajectory_raw", "outcome_result", "outcome_error", "rationale", "callback_url")
        .order_by("-created_at", "-id")
    )
    return list(queryset[: max(limit, 0)])


def safety_net_replay(changes: Iterable[TypeChange], *, recent: int | None = None) -> SafetyNetReport:
    """Replay each changed type's recent labelled history under its new policy and its live one."""
    limit = settings.GATE_SAFETY_NET_RECENT if recent is None else recent
    started = time.monotonic()
    unsafe: list[UnsafeCase] = []
    safe = 0
    per_type: dict[str, int] = {}
    for change in changes:
        if change.live is not None and same_decisions(change.live.spec, change.candidate.spec):
            per_type[change.name] = 0  # re-imported as it is: nothing can change
            continue
        actions = recent_labelled(change.name, limit)
        per_type[change.name] = len(actions)
        for action in actions:
            proposal = stored_proposal(action)
            if policy.policy_evaluate(change.candidate, proposal).status != policy.AUTO_APPROVED:
                continue
            live = policy.policy_evaluate(change.live, proposal).status if change.live else policy_status(action)
            if live == policy.AUTO_APPROVED:
                continue
            if action.ground_truth == LabelValue.UNSAFE:
                unsafe.append(UnsafeCase(str(action.id), change.name, _summary(action), live))
            elif action.ground_truth == LabelValue.SAFE:
                safe += 1
    return SafetyNetReport(
        replayed=sum(per_type.values()),
        unsafe=tuple(unsafe),
        safe_newly_auto_approved=safe,
        seconds=time.monotonic() - started,
        per_type=per_type,
    )


def safety_net_enforce(report: SafetyNetReport, *, accept_risk: bool | Set[str]) -> tuple[UnsafeCase, ...]:
    """The unsafe cases the caller accepted (all of them, or none when there are none); raise
    UnsafePolicyChange, naming them, when any is not accepted. ``accept_risk``: True accepts what
    the replay found; a set of action ids accepts those only (what a confirm page showed), so that a
    case labelled since is shown again."""
    if not report.unsafe:
        return ()
    if accept_risk is True or (accept_risk and {case.id for case in report.unsafe} <= set(accept_risk)):
        return report.unsafe
    count = len(report.unsafe)
    raise UnsafePolicyChange(
        f"refused: the change would newly auto-approve {count} action{'' if count == 1 else 's'} labelled "
        f"unsafe in the recent labelled history ({report.replayed} replayed), and "
        f"{report.safe_newly_auto_approved} labelled safe; nothing changed. "
        + " | ".join(case.line() for case in report.unsafe),
        cases=[case.as_dict() for case in report.unsafe],
        safe_newly_auto_approved=report.safe_newly_auto_approved,
        replayed=report.replayed,
    )
