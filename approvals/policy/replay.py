"""Dry runs: proposed actions (as JSONL lines) through a policy, with no side effects, tallied
by label so that a policy author sees what it would automate and what unsafe calls it would pass.

With ``remember_minutes`` it also simulates reviewers who approve with "apply to similar actions in
this session" (contract §5, remembered approvals): every held proposal whose label is safe is taken
as approved with remember, and a later held proposal of the same agent, type and
``context.session_id`` that fails only checks such an approval accepted counts as auto-approved by it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from approvals.policy.engine import (
    AUTO_APPROVED,
    BLOCKED,
    NEEDS_REVIEW,
    CompiledPolicy,
    Decision,
    Proposal,
    failed_checks,
    policy_evaluate,
    remembered_cover,
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
class RememberTally:
    """What-if of remembered approvals for one action type, or for all: the outcomes with the
    simulation, the held proposals it covered per label, and how many approvals it remembered."""

    simulated: Tally = field(default_factory=Tally)
    covered: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    approvals: int = 0

    def figures(self, minutes: float, safe_labels: frozenset[str]) -> dict[str, Any]:
        simulated = self.simulated.figures(safe_labels)
        return {
            "minutes": minutes,
            "approvals_remembered": self.approvals,
            "covered": sum(self.covered.values()),
            "covered_by_label": dict(sorted(self.covered.items())),
            "safe_automation_rate": simulated["safe_automation_rate"],
            "unsafe_auto_approved": simulated["unsafe_auto_approved"],
        }


@dataclass
class ReplayResult:
    overall: Tally = field(default_factory=Tally)
    per_action_type: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    decisions: list[tuple[dict[str, Any], Decision]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # The remembered-approvals simulation, when asked for (remember_minutes).
    remember_minutes: float | None = None
    remembered_overall: RememberTally = field(default_factory=RememberTally)
    remembered_per_action_type: dict[str, RememberTally] = field(default_factory=lambda: defaultdict(RememberTally))
    # Index in ``decisions`` of each held proposal the simulation covered -> the id of the line
    # whose remembered approval covered it.
    covered_by: dict[int, str] = field(default_factory=dict)

    def figures(self, safe_labels: frozenset[str] = DEFAULT_SAFE_LABELS) -> dict[str, Any]:
        """Without the simulation at the top level; with it under ``remembered_approvals``."""
        figures: dict[str, Any] = {
            **self.overall.figures(safe_labels),
            "per_action_type": {
                name: self._type_figures(name, tally, safe_labels)
                for name, tally in sorted(self.per_action_type.items())
            },
            "errors": list(self.errors),
        }
        if self.remember_minutes is not None:
            figures["remembered_approvals"] = self.remembered_overall.figures(self.remember_minutes, safe_labels)
        return figures

    def _type_figures(self, name: str, tally: Tally, safe_labels: frozenset[str]) -> dict[str, Any]:
        figures = tally.figures(safe_labels)
        if self.remember_minutes is not None:
            figures["remembered_approvals"] = self.remembered_per_action_type[name].figures(
                self.remember_minutes, safe_labels
            )
        return figures


def world_time(context: dict[str, Any]) -> datetime | None:
    """``context.world_time`` (ISO 8601; without an offset taken as UTC), or None."""
    raw = context.get("world_time")
    if not isinstance(raw, str):
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class SimulatedApproval:
    """A reviewer's approve with remember, as the simulation keeps it."""

    source: str  # the id of the line approved
    failed: list[str]
    since: datetime | None  # the approved proposal's world time; None: valid for the rest of the file
    until: datetime | None

    def active_at(self, when: datetime | None) -> bool:
        if self.since is None or self.until is None:
            return True
        # A proposal with no world time cannot be placed inside the window: never covered.
        return when is not None and self.since <= when < self.until

    def as_remembered(self) -> dict[str, Any]:
        """The shape ``engine.remembered_cover`` takes (as ``remembered_approvals_for`` makes it)."""
        return {
            "id": self.source,
            "failed": self.failed,
            "by": "replay",
            "expires_at": self.until.isoformat() if self.until else None,
        }


class RememberSimulation:
    """Remembered approvals per (agent name, action type, session id), in the order they were made."""

    def __init__(self, minutes: float) -> None:
        self.window = timedelta(minutes=minutes)
        self.approvals: dict[tuple[str, str, str], list[SimulatedApproval]] = defaultdict(list)

    @staticmethod
    def key(proposal: Proposal) -> tuple[str, str, str] | None:
        session_id = proposal.context.get("session_id")
        if not (isinstance(session_id, str) and session_id):
            return None  # no session: nothing to remember it for, and nothing covers it
        return (str(proposal.agent.get("name", "")), proposal.action_type, session_id)

    def cover(self, proposal: Proposal, decision: Decision) -> str | None:
        """The source line of the remembered approval that covers this held proposal, if any."""
        key = self.key(proposal)
        if key is None or decision.status != NEEDS_REVIEW:
            return None
        when = world_time(proposal.context)
        active = [a.as_remembered() for a in reversed(self.approvals[key]) if a.active_at(when)]
        covering = remembered_cover(decision.findings, tuple(active))
        return str(covering["id"]) if covering else None

    def remember(self, proposal: Proposal, decision: Decision, *, source: str) -> bool:
        """A reviewer approves this held proposal with remember; False when it has no session."""
        key = self.key(proposal)
        if key is None:
            return False
        since = world_time(proposal.context)
        self.approvals[key].append(
            SimulatedApproval(
                source=source,
                failed=failed_checks(decision.findings),
                since=since,
                until=since + self.window if since else None,
            )
        )
        return True


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


def replay(
    lines: Iterable[tuple[int, Any]],
    policies: dict[str, CompiledPolicy],
    *,
    now: datetime,
    remember_minutes: float | None = None,
    safe_labels: frozenset[str] = DEFAULT_SAFE_LABELS,
    gather: Callable[[CompiledPolicy, Proposal], Proposal] | None = None,
) -> ReplayResult:
    """Evaluate numbered lines in order; a line that cannot be evaluated is reported, never guessed at.

    ``remember_minutes``: also simulate remembered approvals (see the module's docstring), valid for
    that many minutes of ``context.world_time`` after the approved proposal's, or for the rest of
    the file when it has none. A held proposal with an unsafe label is taken as rejected.
    ``gather``: adds the evidence a policy's lookups and history would give (the caller's I/O).
    """
    result = ReplayResult(remember_minutes=remember_minutes)
    simulation = RememberSimulation(remember_minutes) if remember_minutes is not None else None
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
        if gather is not None:
            proposal = gather(policy, proposal)
        decision = policy_evaluate(policy, proposal)
        label = str(line.get("label") or UNLABELLED)
        result.overall.add(label, decision.status)
        result.per_action_type[proposal.action_type].add(label, decision.status)
        if simulation is not None:
            tallies = (result.remembered_overall, result.remembered_per_action_type[proposal.action_type])
            status = decision.status
            source = simulation.cover(proposal, decision)
            if source is not None:
                status = AUTO_APPROVED
                result.covered_by[len(result.decisions)] = source
                for tally in tallies:
                    tally.covered[label] += 1
            elif decision.status == NEEDS_REVIEW and label in safe_labels:
                if simulation.remember(proposal, decision, source=str(line.get("id", number))):
                    for tally in tallies:
                        tally.approvals += 1
            for tally in tallies:
                tally.simulated.add(label, status)
        result.decisions.append((line, decision))
    return result
