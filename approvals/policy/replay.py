"""Dry runs: proposed actions (as JSONL lines) through a policy, with no side effects, tallied
by label so that a policy author sees what it would automate and what unsafe calls it would pass.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from approvals.policy.engine import (
    AUTO_APPROVED,
    BLOCKED,
    NEEDS_REVIEW,
    CompiledPolicy,
    Decision,
    Proposal,
    policy_evaluate,
)
from approvals.policy.trajectory import TrajectoryError, normalize_trajectory

OUTCOMES = (AUTO_APPROVED, NEEDS_REVIEW, BLOCKED)
DEFAULT_SAFE_LABELS = frozenset({"safe", "correct", "escalation_expected"})
UNLABELLED = "(none)"


class ReplayLineError(ValueError):
    pass


@dataclass
class Tally:
    """Outcome counts per label for one action type, or for all."""

    counts: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: dict.fromkeys(OUTCOMES, 0)))

    def add(self, label: str, status: str) -> None:
        self.counts[label][status] += 1

    def figures(self, safe_labels: frozenset[str]) -> dict[str, Any]:
        safe_total = sum(sum(row.values()) for label, row in self.counts.items() if label in safe_labels)
        safe_auto = sum(row[AUTO_APPROVED] for label, row in self.counts.items() if label in safe_labels)
        unsafe_auto = sum(
            row[AUTO_APPROVED] for label, row in self.counts.items() if label not in safe_labels and label != UNLABELLED
        )
        return {
            "total": sum(sum(row.values()) for row in self.counts.values()),
            "by_label": {label: dict(row) for label, row in sorted(self.counts.items())},
            "safe_automation_rate": round(safe_auto / safe_total, 4) if safe_total else None,
            "unsafe_auto_approved": unsafe_auto,
        }


@dataclass
class ReplayResult:
    overall: Tally = field(default_factory=Tally)
    per_action_type: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    decisions: list[tuple[dict[str, Any], Decision]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def figures(self, safe_labels: frozenset[str] = DEFAULT_SAFE_LABELS) -> dict[str, Any]:
        return {
            **self.overall.figures(safe_labels),
            "per_action_type": {
                name: tally.figures(safe_labels) for name, tally in sorted(self.per_action_type.items())
            },
            "errors": list(self.errors),
        }


def proposal_from_line(line: Any, *, number: int, now: datetime) -> Proposal:
    if not isinstance(line, dict):
        raise ReplayLineError("a line must be a JSON object")
    action_type, params = line.get("action_type"), line.get("params")
    if not isinstance(action_type, str) or not isinstance(params, dict):
        raise ReplayLineError("needs 'action_type' (string) and 'params' (object)")
    confidence = line.get("confidence")
    if confidence is not None and (isinstance(confidence, bool) or not isinstance(confidence, (int, float))):
        raise ReplayLineError("'confidence' must be a number")
    try:
        trajectory = normalize_trajectory(line.get("trajectory"))
    except TrajectoryError as exc:
        raise ReplayLineError(str(exc)) from exc
    context = line.get("context") or {}
    agent = line.get("agent") or {"name": "replay"}
    if not isinstance(context, dict) or not isinstance(agent, dict):
        raise ReplayLineError("'context' and 'agent' must be objects")
    return Proposal(
        sample_key=str(line.get("id", number)),
        action_type=action_type,
        params=params,
        confidence=float(confidence) if confidence is not None else None,
        context=context,
        agent=agent,
        trajectory=trajectory,
        now=now,
    )


def replay(lines: Iterable[tuple[int, Any]], policies: dict[str, CompiledPolicy], *, now: datetime) -> ReplayResult:
    """Evaluate numbered lines; a line that cannot be evaluated is reported, never guessed at."""
    result = ReplayResult()
    for number, line in lines:
        try:
            proposal = proposal_from_line(line, number=number, now=now)
        except ReplayLineError as exc:
            result.errors.append(f"line {number}: {exc}")
            continue
        policy = policies.get(proposal.action_type)
        if policy is None:
            result.errors.append(f"line {number}: no policy for action type {proposal.action_type!r}")
            continue
        decision = policy_evaluate(policy, proposal)
        label = str(line.get("label") or UNLABELLED)
        result.overall.add(label, decision.status)
        result.per_action_type[proposal.action_type].add(label, decision.status)
        result.decisions.append((line, decision))
    return result
