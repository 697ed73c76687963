"""Shadow mode (contract §6.2): a candidate policy stored beside the live one, evaluated on every
proposal of the types it names, its decision recorded and never acted on; and its promotion.

The shadow is evaluated after the live decision has committed and been announced, on the same
proposal with the same gathered evidence (no second round of lookups), so it never delays the live
decision: a worker pays its cost after the agent has its answer. Nothing it decides moves an action
(no transition, no webhook), and a fault of the shadow is recorded as its ``error``, never raised.

A shadow names some types; the others keep the live policy (as ``import_policies`` leaves the types
a file does not name), so their actions get no shadow result: the shadow would decide them as the
live policy did. Evidence the live policy does not gather (a lookup or aggregate only the shadow
names) is missing for the shadow: a rule that reads it errs, and the shadow holds (fails closed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from approvals import policy
from approvals.errors import NoShadowPolicy
from approvals.evaluation.shadow import shadow_history_preview
from approvals.gate import selectors
from approvals.gate.policies import policies_import, review_groups_known
from approvals.lifecycle.audit import audit_record
from approvals.models import ProposedAction, ShadowPolicy, ShadowResult, ShadowStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShadowImported:
    shadow: ShadowPolicy
    replaced: int | None  # the version of the shadow it replaced
    preview: dict[str, Any]  # the labelled history replayed under it (evaluation.shadow)


def shadow_policy_import(*, document: Any, actor: str) -> ShadowImported:
    """Store a policy document as the shadow policy, replacing the active one, audited.

    Validated as a live import is, its policy tests included (PolicyError listing every problem,
    PolicyTestsFailed; nothing changes, the earlier shadow stays). Never refused for what it would
    auto-approve: the preview reports it.
    """
    specs = policy.parse_document(document)
    review_groups_known(specs)  # refused now, not when it is promoted
    policy.policy_tests_check(specs, compiled={spec.name: policy.compile_policy(spec, 0) for spec in specs})
    preview = shadow_history_preview(specs)
    names = [spec.name for spec in specs]
    with transaction.atomic():
        earlier = ShadowPolicy.objects.select_for_update().filter(active=True).first()
        latest = ShadowPolicy.objects.aggregate(latest=Max("version"))["latest"] or 0
        if earlier is not None:
            ShadowPolicy.objects.filter(pk=earlier.pk).update(active=False, ended_at=timezone.now())
        shadow = ShadowPolicy.objects.create(
            version=latest + 1, document=policy.build_document(specs), created_by=actor, active=True
        )
        audit_record(
            action=None,
            event="shadow_policy_imported",
            actor=actor,
            data={
                "shadow_policy_version": shadow.version,
                "replaces": earlier.version if earlier else None,
                "action_types": names,
                "unsafe_newly_auto_approved": [case["id"] for case in preview["unsafe_newly_auto_approved"]],
                "safe_newly_auto_approved": preview["safe_newly_auto_approved"],
            },
        )
    return ShadowImported(shadow=shadow, replaced=earlier.version if earlier else None, preview=preview)


def shadow_policy_promote(*, actor: str, accept_risk: bool = False) -> tuple[ShadowPolicy, int]:
    """Make the active shadow the live policy through ``policies_import`` (source
    ``shadow_promotion``: every check a live import gets applies), then end shadow mode; audited, all
    or nothing. Returns the shadow and the new policy_version. Raises NoShadowPolicy, or what the
    import refuses (PolicyError, UnsafePolicyChange unless ``accept_risk``): then nothing changes and
    the shadow stays."""
    with transaction.atomic():
        shadow = ShadowPolicy.objects.select_for_update().filter(active=True).first()
        if shadow is None:
            raise NoShadowPolicy("There is no shadow policy to promote: import one with import_policies --shadow FILE.")
        version = policies_import(
            document=shadow.document, actor=actor, source="shadow_promotion", accept_risk=accept_risk
        )
        ShadowPolicy.objects.filter(pk=shadow.pk).update(active=False, ended_at=timezone.now(), promoted_to=version)
        audit_record(
            action=None,
            event="shadow_policy_promoted",
            actor=actor,
            data={"shadow_policy_version": shadow.version, "policy_version": version},
        )
    shadow.refresh_from_db()
    return shadow, version


def _judge(
    shadow_policy_id: int, shadow_policy_version: int, action: ProposedAction, proposal: policy.Proposal
) -> ShadowResult | None:
    compiled = selectors.compiled_shadow(shadow_policy_id).policies.get(action.action_type.name)
    if compiled is None:
        return None  # a type the shadow does not name keeps the live policy
    decision = policy.policy_evaluate(compiled, proposal, budget_seconds=settings.GATE_EVALUATION_BUDGET_MS / 1000)
    return ShadowResult(
        shadow_policy_id=shadow_policy_id,
        shadow_policy_version=shadow_policy_version,
        action_id=action.pk,
        status=decision.status,
        risk_score=decision.risk_score,
        failed=policy.failed_checks(decision.findings),
    )


def shadow_evaluate(
    *,
    shadow_policy_id: int,
    shadow_policy_version: int,
    action: ProposedAction,
    proposal: policy.Proposal,
    live_status: str,
) -> ShadowResult | None:
    """Evaluate the shadow policy on the proposal the live policy just decided (its evidence
    gathered) and record its decision beside ``live_status``. Never raises and never acts: a fault
    is recorded as the shadow's error. None when the shadow does not name the type, or when not even
    the error could be recorded (logged)."""
    try:
        result = _judge(shadow_policy_id, shadow_policy_version, action, proposal)
    except Exception as exc:
        logger.exception("shadow policy v%s failed on action %s", shadow_policy_version, action.pk)
        result = ShadowResult(
            shadow_policy_id=shadow_policy_id,
            shadow_policy_version=shadow_policy_version,
            action_id=action.pk,
            status=ShadowStatus.ERROR,
            error=f"{type(exc).__name__}: {exc}"[:2000],
        )
    if result is None:
        return None
    result.live_status = live_status
    try:
        # Once per action and shadow: a repeated delivery of the evaluation records nothing twice.
        ShadowResult.objects.bulk_create([result], ignore_conflicts=True)
    except Exception:
        logger.exception("could not record shadow policy v%s's decision on action %s", shadow_policy_version, action.pk)
        return None
    return result
