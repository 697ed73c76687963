"""The lifecycle of an action as data, and the one function that moves an action through it.

``TRANSITIONS`` declares every change an action can go through: from which statuses, to which (none:
the status stays, as when a held action is escalated or claimed), the audit event it records, the
webhook event it sends, and who may cause it. ``transition_apply`` is the only code that changes an
action's status: one guarded ``UPDATE … WHERE status IN (…) RETURNING`` (so of two racing changes
exactly one matches), the audit link and an outbox row, in one durable transaction. What the outbox
row announces reaches waiting agents, review pages, webhooks and metrics after the commit
(approvals.lifecycle.outbox).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from django.db import transaction
from django.db.models import Model

from approvals.errors import ActionConflict
from approvals.lifecycle import events, outbox, statements
from approvals.lifecycle.audit import audit_link
from approvals.models import ProposedAction, Status, WebhookDelivery


class Cause(enum.StrEnum):
    """Who may cause a transition."""

    POLICY = "policy"  # the worker's evaluation
    REVIEWER = "reviewer"
    AGENT = "agent"
    DEADLINE = "deadline"  # beat: review SLAs and expiry
    SYSTEM = "system"  # the gate itself, e.g. an evaluation that kept failing


@dataclass(frozen=True)
class Transition:
    name: str
    sources: tuple[Status, ...]
    targets: tuple[Status, ...]  # empty: the status stays what it was
    audit_event: str
    webhook_event: str  # "" when the change sends none (contract §4 names four)
    causes: frozenset[Cause]

    @property
    def keeps_status(self) -> bool:
        return not self.targets


def _t(
    name: str,
    sources: Sequence[Status],
    targets: Sequence[Status],
    audit_event: str,
    webhook_event: str,
    *causes: Cause,
) -> Transition:
    return Transition(name, tuple(sources), tuple(targets), audit_event, webhook_event, frozenset(causes))


_ALL = tuple(Status)
TRANSITIONS: dict[str, Transition] = {
    t.name: t
    for t in (
        _t(
            "evaluate",
            [Status.PENDING],
            [Status.AUTO_APPROVED, Status.NEEDS_REVIEW, Status.BLOCKED],
            "evaluated",
            "action.evaluated",
            Cause.POLICY,
        ),
        # A reviewer's remembered approval covers what the policy would hold (contract §5).
        _t(
            "approve_remembered",
            [Status.PENDING],
            [Status.AUTO_APPROVED],
            "evaluated",
            "action.evaluated",
            Cause.POLICY,
        ),
        # Its evaluation kept failing: a person decides (nothing is auto-approved by a fault).
        _t("hold", [Status.PENDING], [Status.NEEDS_REVIEW], "evaluated", "action.evaluated", Cause.SYSTEM),
        _t(
            "decide",
            [Status.NEEDS_REVIEW],
            [Status.APPROVED, Status.REJECTED],
            "decided",
            "action.decided",
            Cause.REVIEWER,
        ),
        # One reviewer's approval of an action that needs more (the two-person rule, contract §6.3):
        # counted, still held; the approval that completes the count is a "decide".
        _t("approve_partial", [Status.NEEDS_REVIEW], [], "approved_partially", "", Cause.REVIEWER),
        _t("escalate", [Status.NEEDS_REVIEW], [], "escalated", "action.escalated", Cause.DEADLINE),
        _t("expire", [Status.NEEDS_REVIEW], [Status.EXPIRED], "expired", "action.expired", Cause.DEADLINE),
        _t("cancel", [Status.PENDING, Status.NEEDS_REVIEW], [Status.CANCELLED], "cancelled", "", Cause.AGENT),
        _t("claim", [Status.NEEDS_REVIEW], [], "claimed", "", Cause.REVIEWER),
        _t(
            "report_outcome",
            [Status.APPROVED, Status.AUTO_APPROVED],
            [],
            "outcome_reported",
            "",
            Cause.AGENT,
        ),
        _t("label", _ALL, [], "labelled", "", Cause.REVIEWER),
    )
}


class TransitionRefused(ActionConflict):
    """The action's status (or the transition's guard) does not allow the change: nothing changed."""

    def __init__(self, transition: Transition, status: str | None, message: str = "") -> None:
        self.transition, self.status = transition, status
        default = _REFUSED.get(transition.name, "action is {status}: it cannot be " + transition.name + "d")
        super().__init__(message or default.format(status=status))


# What an agent or reviewer is told when the action's status does not allow the change.
_REFUSED = {
    "decide": "action is {status}, not needs_review: it cannot be decided",
    "cancel": "action is {status}: only pending or needs_review actions can be cancelled",
    "report_outcome": "action is {status}: outcomes are reported for approved actions only",
    "evaluate": "action is {status}: only pending actions are evaluated",
    "approve_remembered": "action is {status}: only pending actions are evaluated",
    "hold": "action is {status}: only pending actions are held",
    "approve_partial": "action is {status}, not needs_review: it cannot be decided",
    "escalate": "action is {status}: only held actions are escalated",
    "expire": "action is {status}: only held actions expire",
    "claim": "action is {status}: only held actions are claimed",
}


@dataclass
class Applied:
    """What a transition did: the action, the status it left and the one it reached, and what its
    audit link records."""

    transition: Transition
    action_id: str
    from_status: str
    to_status: str
    audit_data: dict[str, Any] = field(default_factory=dict)
    # New rows that belong with the change (an evaluation's Decision): ``effects`` adds them, and they
    # are inserted with the audit link and the outbox row, in one statement on PostgreSQL.
    rows: list[Model] = field(default_factory=list)


def transition_apply(
    name: str,
    *,
    action_id: str | UUID,
    cause: Cause,
    actor: str,
    to: Status | str | None = None,
    changes: Mapping[str, Any] | None = None,
    guard: Sequence[statements.Condition] = (),
    refusal: Callable[[str | None], str] | None = None,
    audit_data: Mapping[str, Any] | None = None,
    effects: Callable[[Applied], Mapping[str, Any] | None] | None = None,
    announce: Mapping[str, Any] | None = None,
) -> Applied:
    """Apply the transition ``name`` to one action, or raise TransitionRefused and change nothing.

    ``to``: the status it moves to (one of the transition's targets; implied when it has one).
    ``changes``: other columns set in the same UPDATE. ``guard``: conditions beyond the status that
    must hold (``refusal`` words the error when they do not). ``effects`` runs after the UPDATE in
    the same transaction (it may write, or add new rows to ``Applied.rows``, such as a Decision) and
    may return more audit data. ``announce``: extra fields for the outbox (the push, the metrics).
    """
    transition = TRANSITIONS[name]
    if cause not in transition.causes:
        raise ValueError(f"{cause} may not cause {name}")
    target = _target(transition, to)
    values = dict(changes or {})
    if target is not None:
        values["status"] = target
    if not values:
        raise ValueError(f"{name} keeps the status and was given nothing to change")
    # One durable transaction: the change, its audit link and its announcement commit together,
    # and never inside a caller's transaction whose rollback would take them back after the push.
    with transaction.atomic(durable=True):
        matched = _guarded_update(transition, str(action_id), values, guard)
        if matched is None:
            current = ProposedAction.objects.filter(pk=action_id).values_list("status", flat=True).first()
            if current is None:
                raise ProposedAction.DoesNotExist(f"no action {action_id}")
            in_source = current in transition.sources
            raise TransitionRefused(transition, current, refusal(current) if refusal and in_source else "")
        from_status, callback_url, audience = matched
        applied = Applied(transition, str(action_id), from_status, target or from_status)
        applied.audit_data = dict(audit_data or {})
        if effects is not None:
            applied.audit_data.update(effects(applied) or {})
        link = audit_link(
            action=ProposedAction(id=applied.action_id),
            event=transition.audit_event,
            actor=actor,
            from_status=applied.from_status,
            to_status=applied.to_status,
            data=applied.audit_data,
            row_locked=True,  # by the guarded UPDATE above
        )
        payload = dict(announce or {})
        payload["push_groups"] = events.push_groups(**audience)
        if transition.webhook_event and callback_url:
            # The delivery carries the action as it stands in this transaction, its new rows included.
            statements.insert_all(applied.rows)
            applied.rows = []
            payload["webhook_delivery"] = _webhook_delivery(applied.action_id, transition.webhook_event, callback_url)
        row = outbox.outbox_row(
            action_id=applied.action_id, event=transition.audit_event, status=applied.to_status, payload=payload
        )
        statements.insert_all([*applied.rows, link, row])
        outbox.outbox_announce(row)
    return applied


def _target(transition: Transition, to: Status | str | None) -> Status | None:
    if transition.keeps_status:
        if to is not None:
            raise ValueError(f"{transition.name} keeps the status; it cannot move to {to}")
        return None
    if to is None and len(transition.targets) == 1:
        return transition.targets[0]
    if to not in transition.targets:
        raise ValueError(f"{transition.name} moves to one of {', '.join(transition.targets)}, not {to}")
    return Status(to)


# Who the change is pushed to (events.push_groups): whether the action is escalated (after the
# change) and its type's review groups, returned by the UPDATE itself.
_AUDIENCE = ("escalated",)
_AUDIENCE_OF_TYPE = ("review_group", "escalation_group")


def _audience(row: Sequence[Any]) -> dict[str, Any]:
    escalated, review_group_id, escalation_group_id = row
    return {
        "escalated": bool(escalated),
        "review_group_id": review_group_id,
        "escalation_group_id": escalation_group_id,
    }


def _guarded_update(
    transition: Transition, action_id: str, values: dict[str, Any], guard: Sequence[statements.Condition]
) -> tuple[str, str, dict[str, Any]] | None:
    """The UPDATE, guarded by the source statuses; (status before, callback_url, its audience) or
    None.

    A change of status returns the new status, not the old one; when such a transition has several
    sources (cancel: pending or held), each is tried in the lifecycle's order, one statement each,
    so that the audit link records the status the change really left.
    """
    key = statements.equals(ProposedAction, "id", action_id)
    of_type = [statements.related_column(ProposedAction, "action_type", name) for name in _AUDIENCE_OF_TYPE]
    if transition.keeps_status:
        where = [key, statements.one_of(ProposedAction, "status", transition.sources), *guard]
        row = statements.update_returning(
            ProposedAction, values, where, ["status", "callback_url", *_AUDIENCE], of_type
        )
        return (str(row[0]), str(row[1]), _audience(row[2:])) if row else None
    for source in transition.sources:
        where = [key, statements.equals(ProposedAction, "status", source), *guard]
        row = statements.update_returning(ProposedAction, values, where, ["callback_url", *_AUDIENCE], of_type)
        if row is not None:
            return str(source), str(row[0]), _audience(row[1:])
    return None


def _webhook_delivery(action_id: str, event: str, url: str) -> int:
    """A delivery of the action as it stands inside the transition's transaction (contract §4),
    signed when it is sent."""
    from approvals.gate import representation

    body = json.dumps(representation.action_read_represented(action_id), separators=(",", ":"), sort_keys=True)
    delivery = WebhookDelivery(action_id=action_id, event=event, url=url, body=body)
    delivery.save(force_insert=True)
    return int(delivery.pk)
