"""Every read the views, tasks and commands need."""

from __future__ import annotations

import contextlib
import threading
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from approvals import policy
from approvals.models import ActionType, Agent, Label, ProposedAction, RememberedApproval, Status

# --- policies -----------------------------------------------------------------------------------

_compiled_lock = threading.Lock()
_compiled: dict[tuple[int, int], policy.CompiledPolicy] = {}


def action_type_spec(action_type: ActionType) -> policy.ActionTypeSpec:
    rules = tuple(
        policy.RuleSpec(name=r.name, require=r.require, on_fail=r.on_fail, risk=r.risk, message=r.message)
        for r in action_type.rules.order_by("position", "id")
    )
    return policy.ActionTypeSpec(
        name=action_type.name,
        params_schema=action_type.params_schema,
        description=action_type.description,
        enabled=action_type.enabled,
        mode=action_type.mode,
        base_risk=action_type.base_risk,
        auto_approve_max_risk=action_type.auto_approve_max_risk,
        block_min_risk=action_type.block_min_risk,
        min_confidence=action_type.min_confidence,
        amount_path=action_type.amount_path,
        max_auto_amount=action_type.max_auto_amount,
        audit_sample_rate=action_type.audit_sample_rate,
        builtin_checks=action_type.builtin_checks,
        review_sla_minutes=action_type.review_sla_minutes,
        expire_after_minutes=action_type.expire_after_minutes,
        rules=rules,
    )


def compiled_policy_for(action_type: ActionType) -> policy.CompiledPolicy:
    """The compiled policy of a type at its current version; compiled once per version."""
    key = (action_type.pk, action_type.policy_version)
    compiled = _compiled.get(key)
    if compiled is None:
        compiled = policy.compile_policy(action_type_spec(action_type), action_type.policy_version)
        with _compiled_lock:
            for stale in [k for k in _compiled if k[0] == action_type.pk]:
                del _compiled[stale]
            _compiled[key] = compiled
    return compiled


_types: dict[tuple[int, int], ActionType] = {}


def action_type_at_version(pk: int, version: int) -> ActionType:
    """The action type ``pk`` as it stood at policy ``version``, read once per version per process.

    Every change of a type (import, admin, applied thresholds) gives it a new ``policy_version`` in
    the transaction that makes it, so a (pk, version) pair names one content, as for the compiled
    policy above. The instance is shared: read it, never change it.
    """
    found = _types.get((pk, version))
    if found is None:
        found = ActionType.objects.get(pk=pk)
        with _compiled_lock:
            for stale in [k for k in _types if k[0] == pk]:
                del _types[stale]
            _types[(pk, found.policy_version)] = found
    return found


def policy_document_current() -> dict[str, Any]:
    types = ActionType.objects.prefetch_related("rules").order_by("name")
    return policy.build_document([action_type_spec(t) for t in types])


# --- actions ------------------------------------------------------------------------------------


def actions_visible_to(principal: Any) -> QuerySet[ProposedAction]:
    """An agent's actions are its own, by construction; reviewers see every action."""
    queryset = ProposedAction.objects.select_related("action_type", "agent", "decision__reviewer")
    if isinstance(principal, Agent):
        return queryset.filter(agent=principal)
    return queryset


def actions_shown_to(principal: Any) -> QuerySet[ProposedAction]:
    """``actions_visible_to``, each flagged ``has_labels`` (an EXISTS in the same query): the
    representation of one without labels (most of them) then needs no query for them."""
    return actions_visible_to(principal).annotate(has_labels=Exists(Label.objects.filter(action=OuterRef("pk"))))


def labels_read(action: ProposedAction) -> ProposedAction:
    """``action`` with ``action.labels.all()`` answered without a query when it is known to have
    none (``has_labels`` False, or just created): an evaluated empty queryset, as prefetch_related
    leaves one."""
    if getattr(action, "has_labels", True):
        return action
    labels = Label.objects.none()
    labels._result_cache, labels._prefetch_done = [], True  # type: ignore[attr-defined]
    action._prefetched_objects_cache = {"labels": labels}  # type: ignore[attr-defined]
    return action


REPEAT_WINDOW = timedelta(hours=24)


def refused_identical_proposal(action: ProposedAction) -> dict[str, str] | None:
    """The newest proposal of the last 24 hours with the same agent, type and params that was
    rejected or blocked (built-in check of contract §5), as {"id", "status"}."""
    earlier = (
        ProposedAction.objects.filter(
            agent_id=action.agent_id,
            action_type_id=action.action_type_id,
            status__in=(Status.REJECTED, Status.BLOCKED),
            created_at__gte=action.created_at - REPEAT_WINDOW,
            params=action.params,
        )
        .exclude(pk=action.pk)
        .order_by("-created_at")
        .values("id", "status")
        .first()
    )
    return {"id": str(earlier["id"]), "status": earlier["status"]} if earlier else None


def review_queue() -> QuerySet[ProposedAction]:
    """Held actions, most urgent first: escalated, then SLA deadline, then risk."""
    return (
        ProposedAction.objects.filter(status=Status.NEEDS_REVIEW)
        .select_related("action_type", "agent", "decision__reviewer")
        .order_by(
            F("escalated").desc(),
            F("sla_deadline").asc(nulls_last=True),
            F("risk_score").desc(nulls_last=True),
            "created_at",
        )
    )


RISK_BANDS: dict[str, tuple[float, float]] = {"low": (0.0, 0.3), "medium": (0.3, 0.7), "high": (0.7, 1.01)}
QUEUE_TABS = ("queue", "audit", "decided")


def review_page_queryset(
    *, tab: str, action_type: str = "", agent: str = "", risk: str = "", search: str = ""
) -> QuerySet[ProposedAction]:
    """What a tab of the review page lists: held actions, audit samples awaiting a label, or the
    last day's decisions; narrowed by type, agent, risk band and a search over ids and names."""
    if tab == "audit":
        queryset = ProposedAction.objects.filter(audit_flagged=True, labels__isnull=True).order_by("-created_at")
    elif tab == "decided":
        queryset = ProposedAction.objects.filter(decided_at__gte=timezone.now() - REPEAT_WINDOW).order_by(
            F("decided_at").desc(nulls_last=True)
        )
    else:
        queryset = review_queue()
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


def claim_holder(action: ProposedAction, *, now: datetime | None = None) -> int | None:
    """The id of the user whose claim on the action is still live, or None."""
    if action.claimed_by_id is None or action.claimed_until is None:
        return None
    return action.claimed_by_id if action.claimed_until > (now or timezone.now()) else None


def review_next_action(after: ProposedAction) -> ProposedAction | None:
    """The most urgent held action other than ``after``: where a reviewer goes after deciding."""
    return review_queue().exclude(pk=after.pk).first()


def remembered_approvals_for(action: ProposedAction, *, now: datetime | None = None) -> tuple[dict[str, Any], ...]:
    """Active remembered approvals that may cover ``action``: same agent, type and session."""
    session_id = action.context.get("session_id") if isinstance(action.context, dict) else None
    if not (isinstance(session_id, str) and session_id):
        return ()
    now = now or timezone.now()
    rows = (
        RememberedApproval.objects.filter(
            agent_id=action.agent_id,
            action_type_id=action.action_type_id,
            session_id=session_id,
            revoked_at__isnull=True,
            expires_at__gt=now,
            created_at__lte=action.created_at,
        )
        .select_related("reviewer")
        .order_by("-created_at")
    )
    return tuple(
        {
            "id": row.pk,
            "failed": list(row.failed),
            "by": row.reviewer.get_username(),
            "expires_at": row.expires_at.isoformat(),
        }
        for row in rows
    )
