"""What reviewers (and review deadlines) change: decisions, claims, labels, escalation, expiry,
remembered approvals. Each change of an action is a transition of approvals.lifecycle."""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from approvals import policy
from approvals.errors import NotReviewerOf, ServiceError
from approvals.gate import selectors as gate_selectors
from approvals.lifecycle import statements
from approvals.lifecycle.audit import actor_of_user, audit_record
from approvals.lifecycle.transitions import Applied, Cause, TransitionRefused, transition_apply
from approvals.models import Decision, Label, LabelValue, ProposedAction, RememberedApproval, Status, Verdict
from approvals.ops import logging as gate_logging
from approvals.review import quorum, selectors

logger = logging.getLogger(__name__)

REMEMBER_MAX_MINUTES = 24 * 60
CLAIM_DURATION = timedelta(minutes=5)


def action_review_check(*, action_id: str, user: User) -> None:
    """Raise NotReviewerOf unless ``user`` may review the action (its type's review group, contract
    §6.3); an action that does not exist raises DoesNotExist. Every decision and claim, from any
    door (API, desk, Slack), starts here; so does a reviewer's label."""
    if selectors.action_reviewable_by(user, action_id):
        return
    if not selectors.action_exists(action_id):
        raise ProposedAction.DoesNotExist(f"no action {action_id}")
    raise NotReviewerOf(
        f"{user.get_username()} may not review this action: its type is reviewed by another group "
        "(ask an administrator to add you to its review group)."
    )


def action_decide(
    *,
    action_id: str,
    user: User,
    verdict: str,
    reason: str = "",
    remember_minutes: int | None = None,
    params: dict[str, Any] | None = None,
) -> ProposedAction:
    """A reviewer's verdict on a held action. Of two concurrent decisions exactly one wins.

    ``params`` (approve only): the reviewer's edit, checked against the type's schema; the agent then
    acts with them, ``reason`` telling it why (contract §6.3). An action of a type that needs N
    approvals stays held until N distinct reviewers approved it (approvals.review.quorum); one
    rejection rejects it. ``remember_minutes`` (approve only): also approve, for that long, later
    proposals of the same agent, type and ``context.session_id`` that fail only checks this one failed.
    """
    action_review_check(action_id=action_id, user=user)
    _decision_input_check(verdict, remember_minutes, params)
    action = gate_selectors.actions_visible_to(None).get(pk=action_id)
    gate_logging.bind_action(action)
    session_id = selectors.session_of(action)
    edit = quorum.approval_edit(action, params) if verdict == Verdict.APPROVE else None
    if remember_minutes is not None and action.status == Status.NEEDS_REVIEW:
        _rememberable_check(action, session_id, edited=edit is not None and edit.params is not None)
    now = timezone.now()

    def record(applied: Applied, decision_reason: str) -> dict[str, Any]:
        Decision.objects.create(action=action, verdict=verdict, reviewer=user, reason=decision_reason)
        # An explicit label outranks the verdict. Checked under the row lock the UPDATE holds: a
        # label committed before is seen here; one committed after sets the truth itself.
        if not Label.objects.filter(action=action).exists():
            truth = LabelValue.SAFE if verdict == Verdict.APPROVE else LabelValue.UNSAFE
            ProposedAction.objects.filter(pk=action.pk).update(ground_truth=truth)
        data: dict[str, Any] = {"verdict": verdict, "reason": reason}
        if remember_minutes is not None:
            remembered = RememberedApproval.objects.create(
                source_action_id=applied.action_id,
                agent_id=action.agent_id,
                action_type_id=action.action_type_id,
                session_id=str(session_id),
                failed=policy.failed_checks(action.findings),
                reviewer=user,
                expires_at=now + timedelta(minutes=remember_minutes),
            )
            data["remembered_approval"] = remembered.pk
            data["remembered_until"] = remembered.expires_at.isoformat()
        return data

    waited = (now - action.evaluated_at).total_seconds() if action.evaluated_at else None
    announce = {
        "metrics": {"kind": "review", "action_type": action.action_type.name, "verdict": verdict, "waited": waited}
    }
    if verdict == Verdict.APPROVE:
        final = quorum.action_approve(
            action=action, user=user, reason=reason, edit=edit, now=now, decided=record, announce=announce
        )
        logger.info("approved by %s%s", user.get_username(), "" if final else " (more approvals needed)")
        return gate_selectors.actions_visible_to(None).get(pk=action_id)
    transition_apply(
        "decide",
        action_id=action_id,
        cause=Cause.REVIEWER,
        actor=actor_of_user(user),
        to=Status.REJECTED,
        # A rejected action has no params under approval (earlier approvals stay, as history).
        changes={
            "decided_at": now,
            "claimed_by": None,
            "claimed_until": None,
            "approved_params": None,
            "approved_params_hash": "",
        },
        effects=lambda applied: record(applied, reason),
        announce=announce,
    )
    logger.info("decided: %s by %s", Status.REJECTED, user.get_username(), extra={"status": Status.REJECTED})
    return gate_selectors.actions_visible_to(None).get(pk=action_id)


def _decision_input_check(verdict: str, remember_minutes: int | None, params: Any) -> None:
    """What a decision may carry, whatever the action: a clear 400, nothing changed."""
    if verdict not in Verdict.values:
        raise ServiceError("verdict must be 'approve' or 'reject'")
    if params is not None and verdict != Verdict.APPROVE:
        raise ServiceError("params (an edit) go with an approval only")
    if remember_minutes is not None:
        if verdict != Verdict.APPROVE:
            raise ServiceError("only an approval can be remembered for similar actions")
        if isinstance(remember_minutes, bool) or not 1 <= remember_minutes <= REMEMBER_MAX_MINUTES:
            raise ServiceError(f"remember_minutes must be between 1 and {REMEMBER_MAX_MINUTES}")


def _rememberable_check(action: ProposedAction, session_id: Any, *, edited: bool) -> None:
    """Contract §6.3: "always a person" (mode: review) and "two people" mean every time; an edited
    approval approves other params than the proposals it would cover."""
    spec = action.action_type
    required = max(spec.approvals_required, action.approvals_required)  # the type's now, or when it was held
    if not policy.remembers_approvals(mode=spec.mode, approvals_required=required):
        raise ServiceError(
            f"approvals of {spec.name} actions are never remembered: the type needs a person every time "
            f"(mode: {spec.mode}, approvals_required: {required})"
        )
    if edited:
        raise ServiceError("an approval with edited params cannot be remembered for similar actions")
    if session_id is None:
        raise ServiceError("this action has no context.session_id: there is no session to remember it for")


def action_escalate(*, action_id: str, now: datetime | None = None) -> bool:
    """A held action past its review SLA: flagged and put first in the queue, once. From then on the
    members of its type's ``escalation_group`` see and may decide it too (selectors.actions_reviewable_by),
    and the escalation is pushed to their pages."""
    now = now or timezone.now()
    deadline = ProposedAction.objects.filter(pk=action_id).values_list("sla_deadline", flat=True).first()
    try:
        transition_apply(
            "escalate",
            action_id=action_id,
            cause=Cause.DEADLINE,
            actor="system",
            changes={"escalated": True},
            guard=[
                statements.equals(ProposedAction, "escalated", False),
                statements.at_most(ProposedAction, "sla_deadline", now),
            ],
            audit_data={"sla_deadline": deadline.isoformat() if deadline else None},
        )
    except (TransitionRefused, ProposedAction.DoesNotExist):
        return False
    logger.info("escalated: past its review SLA", extra={"action_id": action_id})
    return True


def action_expire(*, action_id: str, now: datetime | None = None) -> bool:
    """A held action nobody decided in time becomes ``expired`` (never a rejection), once."""
    now = now or timezone.now()
    expires_at = ProposedAction.objects.filter(pk=action_id).values_list("expires_at", flat=True).first()
    try:
        transition_apply(
            "expire",
            action_id=action_id,
            cause=Cause.DEADLINE,
            actor="system",
            changes={"claimed_by": None, "claimed_until": None},
            guard=[statements.at_most(ProposedAction, "expires_at", now)],
            audit_data={"expires_at": expires_at.isoformat() if expires_at else None},
        )
    except (TransitionRefused, ProposedAction.DoesNotExist):
        return False
    logger.info("expired: nobody decided it in time", extra={"action_id": action_id})
    return True


def actions_enforce_deadlines(*, now: datetime | None = None, batch: int = 500) -> dict[str, int]:
    """Beat: expire what is past expires_at, escalate what is past its SLA. Safe to run twice."""
    now = now or timezone.now()
    expired = sum(action_expire(action_id=pk, now=now) for pk in selectors.held_past_expiry(now=now, limit=batch))
    escalated = sum(action_escalate(action_id=pk, now=now) for pk in selectors.held_past_sla(now=now, limit=batch))
    return {"expired": expired, "escalated": escalated}


def action_claim(*, action_id: str, user: User) -> ProposedAction:
    """Mark a held action as open by ``user`` for a few minutes, so that other reviewers see it.

    Advisory only: a live claim of someone else is left alone (the caller shows who holds it), and
    no decision is ever refused because of a claim. The holder's own claim is renewed.
    """
    action_review_check(action_id=action_id, user=user)
    now = timezone.now()
    # Refused when it is not held any more, or someone else has it open: the page says so.
    with contextlib.suppress(TransitionRefused):
        transition_apply(
            "claim",
            action_id=action_id,
            cause=Cause.REVIEWER,
            actor=actor_of_user(user),
            changes={"claimed_by": user.pk, "claimed_until": now + CLAIM_DURATION},
            guard=[
                statements.either(
                    statements.is_null(ProposedAction, "claimed_by"),
                    statements.equals(ProposedAction, "claimed_by", user.pk),
                    statements.at_most(ProposedAction, "claimed_until", now),
                )
            ],
            audit_data={"until": (now + CLAIM_DURATION).isoformat()},
            announce={"push": {"claimed_by": user.get_username()}},
        )
    return gate_selectors.actions_visible_to(None).select_related("claimed_by").get(pk=action_id)


def label_create(
    *, action: ProposedAction, author: User, label: str, tags: list[str] | None = None, note: str = ""
) -> Label:
    """Record ground truth for any action; the newest label of an action wins, history stays. (The
    desk and the API check ``action_review_check`` first; import_labelled labels as the gate.)"""
    created: list[Label] = []

    def record(applied: Applied) -> None:
        created.append(Label.objects.create(action=action, label=label, tags=tags or [], note=note, author=author))

    transition_apply(
        "label",
        action_id=str(action.pk),
        cause=Cause.REVIEWER,
        actor=actor_of_user(author),
        changes={"ground_truth": label},
        effects=record,
        audit_data={"label": label, "tags": tags or [], "note": note},
    )
    action.ground_truth = label
    return created[0]


def remembered_approval_revoke(*, remembered: RememberedApproval, user: User) -> RememberedApproval:
    """Stop a remembered approval from approving anything more; what it approved stays approved.

    Not a change of any action: the approval's own row, audited on the chain of the action it
    came from.
    """
    with transaction.atomic():
        remembered = RememberedApproval.objects.select_for_update().get(pk=remembered.pk)
        if remembered.revoked_at is not None:
            return remembered
        remembered.revoked_at, remembered.revoked_by = timezone.now(), user
        remembered.save(update_fields=["revoked_at", "revoked_by"])
        audit_record(
            action=remembered.source_action,
            event="remembered_approval_revoked",
            actor=actor_of_user(user),
            data={"remembered_approval": remembered.pk, "applied_to": remembered.applied_to.count()},
        )
    return remembered
