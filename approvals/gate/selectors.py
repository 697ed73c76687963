"""Reads of the gate: actions as a principal may see them, what an evaluation needs, and the policy
store (a type's spec, its compiled policy, the whole document)."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import Group
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from approvals import policy
from approvals.gate import statements
from approvals.models import (
    ActionType,
    Agent,
    Label,
    PolicyVersion,
    ProposedAction,
    RememberedApproval,
    ShadowPolicy,
    Status,
)

# --- actions ------------------------------------------------------------------------------------


def actions_visible_to(principal: Any) -> QuerySet[ProposedAction]:
    """An agent's actions are its own, by construction; reviewers (and the gate) see every action."""
    queryset = ProposedAction.objects.select_related("action_type", "agent", "decision__reviewer")
    if isinstance(principal, Agent):
        return queryset.filter(agent=principal)
    return queryset


def actions_shown_to(principal: Any) -> QuerySet[ProposedAction]:
    """``actions_visible_to``, each flagged ``has_labels`` (an EXISTS in the same query): the
    representation of one without labels (most of them) then reads none."""
    return actions_visible_to(principal).annotate(has_labels=Exists(Label.objects.filter(action=OuterRef("pk"))))


def action_status(action_id: Any) -> str | None:
    return ProposedAction.objects.filter(pk=action_id).values_list("status", flat=True).first()


def action_owned_by(agent: Agent, action_id: Any) -> ProposedAction:
    """The agent's own action ``action_id``, flagged ``has_labels`` (another's does not exist for it:
    DoesNotExist)."""
    return actions_shown_to(agent).get(pk=action_id)


def action_is_owned_by(agent: Agent, action_id: Any) -> bool:
    return ProposedAction.objects.filter(pk=action_id, agent=agent).exists()


REPEAT_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class ForEvaluation:
    """A pending action as its evaluation reads it (one statement on PostgreSQL)."""

    action: ProposedAction
    agent_name: str
    # The built-in checks' finds: a refused identical proposal of the last 24 hours, and an approved
    # action with equal params that repeat_of_executed counts ({"id", "status"} or None).
    refused_repeat_of: dict[str, str] | None
    executed_repeat_of: dict[str, str] | None
    # The active shadow policy (contract §6.2), evaluated beside the live policy: its id and version.
    shadow_policy_id: int | None = None
    shadow_policy_version: int | None = None


def _status_and_id(found: str | None) -> dict[str, str] | None:
    if not found:
        return None
    status, found_id = found.split(" ", 1)
    return {"id": str(uuid.UUID(found_id)), "status": status}


def action_for_evaluation(action_id: str, *, now: datetime) -> ForEvaluation | None:
    """Count an attempt at evaluating the pending action ``action_id`` (committed at once: a worker
    killed midway counts too) and read it with its type (read once per policy version), its agent's
    name and what the built-in repeat checks need; None when it is not pending. One statement on
    PostgreSQL (gate/statements.py)."""
    action = statements.count_and_load_for_evaluation(
        action_id, refused_since=now - REPEAT_WINDOW, executed_since=now - REPEAT_WINDOW
    )
    if action is None:
        return None
    action.action_type = action_type_at_version(action.action_type_id, action.type_version)  # type: ignore[attr-defined]
    return ForEvaluation(
        action=action,
        agent_name=action.agent_name,  # type: ignore[attr-defined]
        refused_repeat_of=_status_and_id(action.refused_repeat),  # type: ignore[attr-defined]
        executed_repeat_of=_status_and_id(action.executed_repeat),  # type: ignore[attr-defined]
        shadow_policy_id=action.shadow_policy_id,  # type: ignore[attr-defined]
        shadow_policy_version=action.shadow_policy_version,  # type: ignore[attr-defined]
    )


def actions_stale_pending(*, created_before: datetime, limit: int = 1000) -> list[tuple[str, int]]:
    rows = ProposedAction.objects.filter(status=Status.PENDING, created_at__lt=created_before).values_list(
        "id", "evaluation_attempts"
    )
    return [(str(pk), attempts) for pk, attempts in rows[:limit]]


def proposal_of(
    action: ProposedAction,
    *,
    agent_name: str,
    now: datetime,
    refused_repeat_of: dict[str, str] | None,
    remembered: tuple[dict[str, Any], ...] = (),
) -> policy.Proposal:
    """A stored action as the policy engine takes it (evaluation, what-if replays)."""
    return policy.Proposal(
        sample_key=str(action.id),
        action_type=action.action_type.name,
        params=action.params,
        confidence=action.confidence,
        context=action.context,
        agent={"name": agent_name},
        trajectory=action.trajectory,
        now=now,
        refused_repeat_of=refused_repeat_of,
        remembered=remembered,
    )


def remembered_approvals_to_lapse(action_id: str) -> list[int]:
    """The active remembered approvals made from ``action_id`` or that approved it."""
    rows = RememberedApproval.objects.filter(
        Q(source_action_id=action_id) | Q(applied_to__id=action_id), revoked_at__isnull=True
    )
    return sorted(set(rows.values_list("pk", flat=True)))


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


# --- the policy store ---------------------------------------------------------------------------

_compiled_lock = threading.Lock()
_compiled: dict[tuple[int, int], policy.CompiledPolicy] = {}
_types: dict[tuple[int, int], ActionType] = {}


def action_type_at_version(pk: int, version: int) -> ActionType:
    """The action type ``pk`` as it stood at policy ``version``, read once per version per process.

    Every change of a type (import, admin, applied thresholds) gives it a new ``policy_version`` in
    the transaction that makes it, so a (pk, version) pair names one content, as for the compiled
    policy below. The instance is shared: read it, never change it.
    """
    found = _types.get((pk, version))
    if found is None:
        found = ActionType.objects.select_related(*policy.GROUP_FIELDS).get(pk=pk)
        with _compiled_lock:
            for stale in [k for k in _types if k[0] == pk]:
                del _types[stale]
            _types[(pk, found.policy_version)] = found
    return found


def action_type_spec(
    action_type: ActionType, *, rules: tuple[policy.RuleSpec, ...] | None = None
) -> policy.ActionTypeSpec:
    """The policy of a type as stored, or, with ``rules``, as an edit (the admin's form and its
    rules, not yet saved) would make it."""
    if rules is None:
        rules = tuple(
            policy.RuleSpec(name=r.name, require=r.require, on_fail=r.on_fail, risk=r.risk, message=r.message)
            for r in action_type.rules.order_by("position", "id")
        )
    evidence = policy.evidence_fields(action_type.lookups, action_type.history, action_type.identity_params)
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
        review_group=action_type.review_group.name if action_type.review_group is not None else None,
        escalation_group=action_type.escalation_group.name if action_type.escalation_group is not None else None,
        approvals_required=action_type.approvals_required,
        rules=rules,
        **evidence,
        tests=policy.stored_tests(action_type.tests, lookups=evidence["lookups"], history=evidence["history"]),
        notify_emails=tuple(action_type.notify_emails or ()),
        notify_slack=action_type.notify_slack,
    )


def compiled_policy_for(action_type: ActionType) -> policy.CompiledPolicy:
    """The compiled policy of a type at its current version; compiled once per version per process.

    Every change of a type (import, admin, applied thresholds) gives it a new ``policy_version`` in
    the transaction that makes it, so a (pk, version) pair names one content.
    """
    key = (action_type.pk, action_type.policy_version)
    compiled = _compiled.get(key)
    if compiled is None:
        compiled = policy.compile_policy(action_type_spec(action_type), action_type.policy_version)
        with _compiled_lock:
            for stale in [k for k in _compiled if k[0] == action_type.pk]:
                del _compiled[stale]
            _compiled[key] = compiled
    return compiled


@dataclass(frozen=True)
class CompiledShadow:
    """A shadow policy compiled: each type its document names, by name (the types it does not name
    are the live policy's, so the shadow decides them as the live policy does)."""

    id: int
    version: int
    policies: dict[str, policy.CompiledPolicy]


_shadows: dict[int, CompiledShadow] = {}


def compiled_shadow(shadow_policy_id: int) -> CompiledShadow:
    """The shadow policy ``shadow_policy_id`` compiled, read and compiled once per process (a shadow's
    document never changes; a new shadow import is a new row). Raises when it is gone or its document
    no longer parses: the caller records the shadow's error."""
    found = _shadows.get(shadow_policy_id)
    if found is None:
        row = ShadowPolicy.objects.values("version", "document").get(pk=shadow_policy_id)
        specs = policy.parse_document(row["document"])
        found = CompiledShadow(
            id=shadow_policy_id,
            version=row["version"],
            policies={spec.name: policy.compile_policy(spec, row["version"]) for spec in specs},
        )
        with _compiled_lock:
            _shadows.clear()  # only the active shadow is evaluated
            _shadows[shadow_policy_id] = found
    return found


def policy_document_current() -> dict[str, Any]:
    types = ActionType.objects.select_related(*policy.GROUP_FIELDS).prefetch_related("rules").order_by("name")
    return policy.build_document([action_type_spec(t) for t in types])


def mcp_servers_document_latest() -> list[dict[str, Any]]:
    """The upstream MCP servers (contract §6.4) as the newest policy version stores them."""
    latest = PolicyVersion.objects.order_by("-number").values_list("document", flat=True).first()
    servers = latest.get("mcp_servers") if isinstance(latest, dict) else None
    return servers if isinstance(servers, list) else []


def policy_versions() -> QuerySet[PolicyVersion]:
    """Every recorded policy version, newest first, without its document (read when iterated)."""
    return PolicyVersion.objects.order_by("-number").defer("document")


def policy_version_numbered(number: int) -> PolicyVersion | None:
    return PolicyVersion.objects.filter(number=number).first()


def group_ids_named(names: set[str]) -> dict[str, int]:
    """The id of each Django group of ``names`` that exists, by name."""
    return dict(Group.objects.filter(name__in=names).values_list("name", "pk"))


def action_type_names() -> list[str]:
    return list(ActionType.objects.order_by("name").values_list("name", flat=True))


def agent_names() -> list[str]:
    return list(Agent.objects.order_by("name").values_list("name", flat=True))
