"""Reads of the reviewer's desk: who may review which action, the queue and its tabs, one action's
page, claims, remembered approvals, and what the deadline sweep looks at."""

from __future__ import annotations

import contextlib
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import Group, User
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from approvals.models import AuditEvent, Label, ProposedAction, RememberedApproval, Rule, Status

RISK_BANDS: dict[str, tuple[float, float]] = {"low": (0.0, 0.3), "medium": (0.3, 0.7), "high": (0.7, 1.01)}
QUEUE_TABS = ("queue", "audit", "decided")
DECIDED_TAB_WINDOW = timedelta(hours=24)


def _reviewable_by(user: User) -> Q:
    """Who may review an action (contract §6.3), as the one condition every read and check uses:
    superusers, any action; others, actions of a type without a review group, of a type whose review
    group they belong to, and, once escalated, of a type whose escalation group they belong to. The
    user's groups are a subquery: no query of its own, none per row. (The reviewer permission itself
    is checked by the views, before.) The pushes of approvals.lifecycle.events route the same way."""
    if user.is_superuser:
        return Q()
    groups = Group.objects.filter(user=user).values("pk")
    return (
        Q(action_type__review_group__isnull=True)
        | Q(action_type__review_group__in=groups)
        | Q(escalated=True, action_type__escalation_group__in=groups)
    )


def actions_reviewable_by(user: User) -> QuerySet[ProposedAction]:
    """Every action ``user`` may see on the desk and decide, in any status."""
    return ProposedAction.objects.filter(_reviewable_by(user))


def action_reviewable_by(user: User, action_id: Any) -> bool:
    """Whether ``user`` may review the action ``action_id`` (False when there is none)."""
    return actions_reviewable_by(user).filter(pk=action_id).exists()


def review_queue(user: User) -> QuerySet[ProposedAction]:
    """The held actions ``user`` may review, most urgent first: escalated, then SLA deadline, then
    risk."""
    return (
        actions_reviewable_by(user)
        .filter(status=Status.NEEDS_REVIEW)
        .select_related("action_type", "agent", "decision__reviewer")
        .order_by(
            F("escalated").desc(),
            F("sla_deadline").asc(nulls_last=True),
            F("risk_score").desc(nulls_last=True),
            "created_at",
        )
    )


def review_page_queryset(
    *, user: User, tab: str, action_type: str = "", agent: str = "", risk: str = "", search: str = ""
) -> QuerySet[ProposedAction]:
    """What a tab of the review page lists for ``user``: held actions, audit samples awaiting a
    label, or the last day's decisions, of the types they review; narrowed by type, agent, risk band
    and a search over ids and names."""
    reviewable = actions_reviewable_by(user)
    if tab == "audit":
        queryset = reviewable.filter(audit_flagged=True, labels__isnull=True).order_by("-created_at")
    elif tab == "decided":
        queryset = reviewable.filter(decided_at__gte=timezone.now() - DECIDED_TAB_WINDOW).order_by(
            F("decided_at").desc(nulls_last=True)
        )
    else:
        queryset = review_queue(user)
    queryset = queryset.select_related("action_type", "agent", "claimed_by", "decision__reviewer")
    if action_type:
        queryset = queryset.filter(action_type__name=action_type)
    if agent:
        queryset = queryset.filter(agent__name=agent)
    if risk in RISK_BANDS:
        low, high = RISK_BANDS[risk]
        queryset = queryset.filter(risk_score__gte=low, risk_score__lt=high)
    if search:
        match = Q(agent__name__icontains=search) | Q(action_type__name__icontains=search)
        match |= Q(idempotency_key=search) | Q(rationale__icontains=search)
        with contextlib.suppress(ValueError):  # not an id: the other fields still match
            match |= Q(pk=uuid.UUID(search))
        queryset = queryset.filter(match)
    return queryset


def review_action(action_id: Any) -> ProposedAction:
    """One action for its review page, with who claimed it (DoesNotExist when there is none; whether
    the reviewer may see it is ``action_reviewable_by``)."""
    return ProposedAction.objects.select_related("action_type", "agent", "claimed_by", "decision__reviewer").get(
        pk=action_id
    )


def action_exists(action_id: Any) -> bool:
    return ProposedAction.objects.filter(pk=action_id).exists()


def action_audit_events(action: ProposedAction) -> QuerySet[AuditEvent]:
    return action.audit_events.all()


def action_labels(action_id: Any) -> QuerySet[Label]:
    """An action's labels, newest first, with their authors."""
    return Label.objects.filter(action_id=action_id).select_related("author")


def session_of(action: ProposedAction) -> str | None:
    session_id = action.context.get("session_id") if isinstance(action.context, dict) else None
    return session_id if isinstance(session_id, str) and session_id else None


def claim_holder(action: ProposedAction, *, now: datetime | None = None) -> int | None:
    """The id of the user whose claim on the action is still live, or None."""
    if action.claimed_by_id is None or action.claimed_until is None:
        return None
    return action.claimed_by_id if action.claimed_until > (now or timezone.now()) else None


def review_next_action(after: Any, user: User) -> ProposedAction | None:
    """The most urgent held action ``user`` may review other than ``after``, and not one they
    approved already (a two-person rule waiting for someone else): where they go after deciding."""
    return review_queue(user).exclude(pk=after.pk).exclude(approvals__reviewer=user).first()


def held_past_expiry(*, now: datetime, limit: int) -> list[str]:
    held = ProposedAction.objects.filter(status=Status.NEEDS_REVIEW, expires_at__lte=now).order_by("expires_at")
    return [str(pk) for pk in held.values_list("pk", flat=True)[:limit]]


def held_past_sla(*, now: datetime, limit: int) -> list[str]:
    held = ProposedAction.objects.filter(status=Status.NEEDS_REVIEW, escalated=False, sla_deadline__lte=now)
    return [str(pk) for pk in held.order_by("sla_deadline").values_list("pk", flat=True)[:limit]]


# --- remembered approvals -----------------------------------------------------------------------


def remembered_approvals() -> QuerySet[RememberedApproval]:
    """Every remembered approval with how many actions it approved, newest first."""
    return (
        RememberedApproval.objects.select_related("agent", "action_type", "reviewer", "revoked_by")
        .annotate(applied_count=Count("applied_to"))
        .order_by("-created_at", "-pk")
    )


def remembered_approval(remembered_id: Any) -> RememberedApproval:
    return remembered_approvals().get(pk=remembered_id)


def remembered_approval_of_action(action_id: Any, remembered_id: str) -> RememberedApproval | None:
    """One of the remembered approvals that ``action_id``'s approval made (None for any other)."""
    if not remembered_id.isdigit():
        return None
    return RememberedApproval.objects.filter(pk=int(remembered_id), source_action_id=action_id).first()


def remembered_approval_that_approved(action: ProposedAction) -> RememberedApproval | None:
    if action.remembered_approval_id is None:
        return None
    return RememberedApproval.objects.select_related("reviewer", "source_action__action_type").get(
        pk=action.remembered_approval_id
    )


def remembered_approvals_made_by(action: ProposedAction) -> list[RememberedApproval]:
    return list(
        action.remembered_approvals.select_related("reviewer", "revoked_by")
        .annotate(applied_count=Count("applied_to"))
        .order_by("-created_at")
    )


def rule_requirements(action_type_id: int) -> dict[str, str]:
    """The CEL expression of each rule of a type, by name: which tools the rules read."""
    return dict(Rule.objects.filter(action_type_id=action_type_id).values_list("name", "require"))
