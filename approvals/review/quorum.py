"""Approving a held action (contract §6.3): a reviewer's edit of its params, and the two-person rule.

An action held with ``approvals_required`` N needs approvals by N distinct reviewers. Each approval
but the last is an ``approve_partial`` transition (the status stays ``needs_review``); the N-th is
the ``decide`` that approves. Both are guarded by columns of the action's own row, which PostgreSQL
checks again on the row's newest version when the UPDATE waited for its lock: ``approvals_count``
(below N-1 for a partial approval, at least N-1 for the last) and ``approved_params_hash`` (empty,
or the hash of the params this approval approves). An ``Approval`` row, unique per (action,
reviewer), is written with each. So two reviewers approving at once both count, once each, the
action is approved exactly once, and the same reviewer never counts twice.

Edits: approvals count for the same params only. The first approval sets the params under approval
(the reviewer's edit, or the proposed params); a later approval without ``params`` approves those;
one with other params is refused (409) until they are rejected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError

from approvals import policy
from approvals.errors import ActionConflict, InvalidParams, ServiceError
from approvals.gate import selectors as gate_selectors
from approvals.gate.params import params_hash, proposed_params_hash
from approvals.lifecycle import statements
from approvals.lifecycle.audit import actor_of_user
from approvals.lifecycle.transitions import Applied, Cause, TransitionRefused, transition_apply
from approvals.models import Approval, ProposedAction, Status

# Counted by someone else between the read and the UPDATE: read again, at most this often (the
# count only grows while held, so a partial approval refused by it succeeds as the last one).
ATTEMPTS = 3


@dataclass(frozen=True)
class Edit:
    """The params an approval approves: ``params`` None when they are the proposed ones."""

    params: dict[str, Any] | None
    hash: str
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> {"old", "new"}


def params_changes(before: Any, after: Any) -> dict[str, dict[str, Any]]:
    """The top-level keys an edit changed, each ``{"old": …, "new": …}`` (a side left out when the
    key is absent there): what the audit log shows of an edit."""
    before = before if isinstance(before, dict) else {}
    changes: dict[str, dict[str, Any]] = {}
    for key in sorted(before.keys() | after.keys()):
        if before.get(key, ...) == after.get(key, ...) and type(before.get(key)) is type(after.get(key)):
            continue
        change = {}
        if key in before:
            change["old"] = before[key]
        if key in after:
            change["new"] = after[key]
        changes[key] = change
    return changes


def approval_edit(action: ProposedAction, params: Any) -> Edit | None:
    """A reviewer's ``params`` checked against the type's schema (the validator the gate evaluates
    proposals with); None when not given, not edited when equal to the proposed params (as JSON).
    Raises InvalidParams naming each problem."""
    if params is None:
        return None
    if not isinstance(params, dict):
        raise ServiceError("params must be a JSON object")
    edited_hash = params_hash(params)
    if edited_hash == proposed_params_hash(action):
        return Edit(None, edited_hash)
    compiled = gate_selectors.compiled_policy_for(action.action_type)
    problems = [
        {"path": str(finding.get("path", "/")), "message": str(finding["message"])}
        for finding in policy.schema_findings(compiled, params)
        if finding["outcome"] != "pass"
    ]
    if problems:
        listed = "; ".join(f"{p['path']}: {p['message']}" for p in problems)
        raise InvalidParams(f"params do not match the schema of {action.action_type.name}: {listed}", problems=problems)
    return Edit(params, edited_hash, params_changes(action.params, params))


def _under_approval(action: ProposedAction, edited: Any, edited_hash: str) -> Edit | None:
    """The params earlier approvals approved, or None when there are none yet."""
    if not edited_hash:
        return None
    if edited is None:
        return Edit(None, edited_hash)
    return Edit(edited, edited_hash, params_changes(action.params, edited))


def _other_params(action: ProposedAction, under: str) -> ActionConflict:
    first = Approval.objects.filter(action=action, params_hash=under).select_related("reviewer").order_by("at").first()
    by = first.reviewer.get_username() if first else "another reviewer"
    return ActionConflict(f"approved by {by} with other params: approve those (without params) or reject the action")


def _approved_by(action: ProposedAction, user: User) -> bool:
    return Approval.objects.filter(action=action, reviewer=user).exists()


def _reasons(action: ProposedAction, reason: str) -> str:
    """The decision's reason: every approver's, in order, each once."""
    given = [*Approval.objects.filter(action=action).order_by("at", "id").values_list("reason", flat=True), reason]
    return "; ".join(dict.fromkeys(text for text in given if text.strip()))


def action_approve(
    *,
    action: ProposedAction,
    user: User,
    reason: str,
    edit: Edit | None,
    now: datetime,
    decided: Callable[[Applied, str], dict[str, Any]],
    announce: dict[str, Any] | None,
) -> bool:
    """Count ``user``'s approval of the held ``action``; True when it was the last one needed, and
    the action is approved (``decided`` then records the decision, given its reason, in the same
    transaction). Raises ActionConflict (409) for a second approval by the same reviewer, an
    approval of other params than earlier approvals', or an action no longer held."""
    if action.status == Status.NEEDS_REVIEW and _approved_by(action, user):
        raise ActionConflict(f"{user.get_username()} has already approved this action: it needs another reviewer")
    chosen = edit
    for _ in range(ATTEMPTS):
        state = (
            ProposedAction.objects.filter(pk=action.pk)
            .values("approvals_count", "approvals_required", "approved_params", "approved_params_hash")
            .get()
        )
        under = _under_approval(action, state["approved_params"], state["approved_params_hash"])
        if chosen is None:  # decided once, from what the request found: never params it was not shown
            chosen = under or Edit(None, proposed_params_hash(action))
        if under is not None and under.hash != chosen.hash:
            raise _other_params(action, under.hash)
        final = state["approvals_count"] >= state["approvals_required"] - 1
        try:
            _approval_apply(action, user, reason, chosen, now=now, final=final, decided=decided, announce=announce)
        except TransitionRefused as refused:
            if refused.status != Status.NEEDS_REVIEW:
                raise
            continue  # counted or approved with an edit by someone else meanwhile: read again
        except IntegrityError:
            # The same reviewer's other request counted first (one approval per reviewer).
            if not _approved_by(action, user):
                raise
            raise ActionConflict(f"{user.get_username()} has already approved this action") from None
        return final
    raise ActionConflict("the action changed while it was being approved: look at it again")


def _approval_apply(
    action: ProposedAction,
    user: User,
    reason: str,
    chosen: Edit,
    *,
    now: datetime,
    final: bool,
    decided: Callable[[Applied, str], dict[str, Any]],
    announce: dict[str, Any] | None,
) -> None:
    model = ProposedAction
    # What open review pages are told of an approval that is not the last (filled in once the count
    # is known, before the transition writes its outbox row): the progress, as absolute figures, so
    # that a repeated push changes nothing.
    progress: dict[str, Any] = {}

    def record(applied: Applied) -> dict[str, Any]:
        decision_reason = _reasons(action, reason) if final else ""
        applied.rows.append(Approval(action=action, reviewer=user, at=now, params_hash=chosen.hash, reason=reason))
        count, required = model.objects.filter(pk=action.pk).values_list("approvals_count", "approvals_required").get()
        data: dict[str, Any] = {
            "verdict": "approve",
            "reason": reason,
            "approvals": count,
            "approvals_required": required,
            "approved_params_hash": chosen.hash,
        }
        if chosen.params is not None:
            data["params_edit"] = chosen.changes
        if final:
            data.update(decided(applied, decision_reason))
        else:
            progress.update(approvals=count, approvals_required=required, approved_by=user.get_username())
        return data

    changes: dict[str, Any] = {
        "approvals_count": statements.Increment(),
        "approved_params": chosen.params,
        "approved_params_hash": chosen.hash,
        "claimed_by": None,
        "claimed_until": None,
    }
    if final:
        changes["decided_at"] = now
    transition_apply(
        "decide" if final else "approve_partial",
        action_id=str(action.pk),
        cause=Cause.REVIEWER,
        actor=actor_of_user(user),
        to=Status.APPROVED if final else None,
        changes=changes,
        guard=[
            statements.compared_to_column(
                model, "approvals_count", ">=" if final else "<", "approvals_required", minus=1
            ),
            statements.either(
                statements.equals(model, "approved_params_hash", ""),
                statements.equals(model, "approved_params_hash", chosen.hash),
            ),
        ],
        effects=record,
        announce=announce if final else {"push": progress},
    )
