"""Gathering an action's evidence before its rules run: one call for the evaluation."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from approvals.evidence.history import executed_repeat, history_values
from approvals.evidence.lookups import lookup_findings, lookups_fetch
from approvals.models import ProposedAction
from approvals.policy import CompiledPolicy, Proposal


def evidence_gather(
    policy: CompiledPolicy, proposal: Proposal, action: ProposedAction, *, now: datetime
) -> tuple[Proposal, dict[str, Any]]:
    """The proposal with its evidence (lookups, history, the executed repeat and the findings of
    what failed) and the record kept with the action: what the gate saw itself."""
    answers = lookups_fetch(policy, proposal)
    history, history_failed, history_record = history_values(policy, proposal, action_id=action.pk, now=now)
    executed = executed_repeat(action, policy.spec.identity_params, now=now) if policy.spec.builtin_checks else None
    gathered = dataclasses.replace(
        proposal,
        lookups={answer.name: answer.value for answer in answers},
        history=history,
        evidence_findings=tuple(lookup_findings(answers) + history_failed),
        executed_repeat_of=executed,
    )
    record: dict[str, Any] = {}
    if answers:
        record["lookups"] = {answer.name: answer.record for answer in answers}
    if history_record:
        record["history"] = history_record
    return gathered, record
