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
    policy: CompiledPolicy,
    proposal: Proposal,
    action: ProposedAction,
    *,
    now: datetime,
    executed_by_params: dict[str, str] | None = None,
) -> tuple[Proposal, dict[str, Any]]:
    """The proposal with its evidence (lookups, history, the executed repeat and the findings of
    what failed) and the record kept with the action: what the gate saw itself.
    ``executed_by_params``: what the evaluation's load found for repeat_of_executed with equal params."""
    answers = lookups_fetch(policy, proposal)
    history, history_failed, history_record = history_values(policy, proposal, action_id=action.pk, now=now)
    executed = None
    if policy.spec.builtin_checks:
        identity = policy.spec.identity_params
        executed = executed_repeat(action, identity, now=now, found_by_params=executed_by_params)
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


def evidence_gather_unstored(policy: CompiledPolicy, proposal: Proposal, *, now: datetime) -> Proposal:
    """A proposal that is not stored (``manage.py replay``'s dry run) with the evidence the gate
    would gather now: its lookups fetched, its history counted (read only; the action itself is not
    in it). The search for an executed repeat needs a stored action and is left out."""
    answers = lookups_fetch(policy, proposal)
    history, history_failed, _ = history_values(policy, proposal, action_id=None, now=now)
    return dataclasses.replace(
        proposal,
        lookups={answer.name: answer.value for answer in answers},
        history=history,
        evidence_findings=tuple(lookup_findings(answers) + history_failed),
    )


def stored_evidence(proposal: Proposal, record: Any, *, executed_repeat_of: dict | None = None) -> Proposal:
    """A stored action's proposal with the evidence the gate gathered when it evaluated it (what-if
    replays judge a candidate policy on what the gate saw then; a lookup or aggregate the action's
    policy did not have is null, so a rule that needs it errs and holds)."""
    record = record if isinstance(record, dict) else {}
    lookups = {name: r.get("body") for name, r in (record.get("lookups") or {}).items() if not r.get("error")}
    history = {name: r.get("value") for name, r in (record.get("history") or {}).items() if "error" not in r}
    return dataclasses.replace(proposal, lookups=lookups, history=history, executed_repeat_of=executed_repeat_of)
