"""The policy store: importing a policy document, an admin's edit of a type, applying a sweep's
thresholds. Each change is validated as a whole, must pass the policy's own tests and the safety
net of the labelled history (contract §6.2: approvals.policy.testing, approvals.evaluation.safety_net),
and is recorded as a new gate-wide policy version (a snapshot of the whole document) and audited,
all or nothing."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from approvals import policy
from approvals.evaluation.safety_net import (
    SafetyNetReport,
    TypeChange,
    UnsafeCase,
    safety_net_enforce,
    safety_net_replay,
)
from approvals.gate import selectors
from approvals.lifecycle.audit import audit_record
from approvals.models import ActionType, PolicyVersion, Rule


@dataclass(frozen=True)
class PolicyChange:
    """What a change that went live passed: its tests and the safety net's replay (with the unsafe
    cases the caller accepted, if any)."""

    version: int
    tests: list[policy.PolicyTestResult]
    safety_net: SafetyNetReport
    accepted: tuple[UnsafeCase, ...] = ()


def _next_policy_version() -> int:
    latest = PolicyVersion.objects.select_for_update().order_by("-number").first()
    return (latest.number if latest else 0) + 1


def review_groups_known(specs: list[policy.ActionTypeSpec]) -> dict[str, int]:
    """The id of each group the specs name (``review_group``, ``escalation_group``). A name with no
    group is refused with its place (the specs are in the document's order): a typo must never hide
    a type's actions from every reviewer but the superusers."""
    named = {getattr(spec, key) for spec in specs for key in policy.GROUP_FIELDS} - {None}
    known = selectors.group_ids_named(named)
    errors = [
        f"action_types[{index}] ({spec.name}).{key}: there is no group {getattr(spec, key)!r} "
        "(create it in the admin, under Authentication and Authorization, or correct the name)"
        for index, spec in enumerate(specs)
        for key in policy.GROUP_FIELDS
        if getattr(spec, key) is not None and getattr(spec, key) not in known
    ]
    if errors:
        raise policy.PolicyError(errors)
    return known


def _write_action_type(spec: policy.ActionTypeSpec, version: int, groups: dict[str, int]) -> ActionType:
    fields = {
        name: getattr(spec, name)
        for name in policy.ActionTypeSpec.__dataclass_fields__
        if name not in ("name", "rules", "tests", *policy.EVIDENCE_FIELDS, *policy.GROUP_FIELDS)
    }
    for name in policy.GROUP_FIELDS:
        group_name = getattr(spec, name)
        fields[f"{name}_id"] = groups[group_name] if group_name is not None else None
    evidence = spec.evidence_document()
    fields.update(
        lookups=evidence.get("lookups", []),
        history=evidence.get("history", []),
        identity_params=evidence.get("identity_params"),
        tests=spec.tests_document(),
        notify_emails=list(spec.notify_emails),
    )
    action_type, _ = ActionType.objects.update_or_create(name=spec.name, defaults={**fields, "policy_version": version})
    action_type.rules.all().delete()
    Rule.objects.bulk_create(
        Rule(
            action_type=action_type,
            position=index,
            name=rule.name,
            require=rule.require,
            on_fail=rule.on_fail,
            risk=rule.risk,
            message=rule.message,
        )
        for index, rule in enumerate(spec.rules)
    )
    return action_type


def policy_version_record(
    *,
    version: int,
    source: str,
    actor: str,
    changed: list[str],
    safety_net: SafetyNetReport | None = None,
    accepted: tuple[UnsafeCase, ...] = (),
    mcp_servers: list[dict[str, Any]] | None = None,
) -> PolicyVersion:
    """Snapshot the whole policy as version ``version``; call inside the changing transaction. The
    unsafe cases the change was accepted with are audited on their own (``policy_risk_accepted``).

    ``mcp_servers``: the upstream MCP servers the imported document named (contract §6.4); None
    keeps the previous version's (an admin edit, a document without the key)."""
    document = selectors.policy_document_current()
    servers = mcp_servers if mcp_servers is not None else selectors.mcp_servers_document_latest()
    if servers:
        document["mcp_servers"] = servers
    record = PolicyVersion.objects.create(number=version, source=source, created_by=actor, document=document)
    data: dict[str, Any] = {"policy_version": version, "source": source, "action_types": changed}
    if safety_net is not None:
        data["safety_net"] = safety_net.audit_data(accepted)
    audit_record(action=None, event="policy_changed", actor=actor, data=data)
    if accepted:
        audit_record(
            action=None,
            event="policy_risk_accepted",
            actor=actor,
            data={
                "policy_version": version,
                "source": source,
                "action_types": changed,
                "accepted": [case.as_dict() for case in accepted],
                "safe_newly_auto_approved": safety_net.safe_newly_auto_approved if safety_net else 0,
            },
        )
    return record


def _checked(
    changes: list[TypeChange], *, accept_risk: bool | Set[str]
) -> tuple[SafetyNetReport, tuple[UnsafeCase, ...]]:
    """The safety net's replay of a change and the unsafe cases accepted; UnsafePolicyChange when
    one is not."""
    report = safety_net_replay(changes)
    return report, safety_net_enforce(report, accept_risk=accept_risk)


def policies_import_report(
    *, document: Any, actor: str, source: str = "import", accept_risk: bool | Set[str] = False
) -> PolicyChange:
    """Create or replace the action types a policy document names, all or nothing.

    Raises PolicyError (listing every problem; PolicyTestsFailed when its own tests fail) or
    UnsafePolicyChange (naming each labelled-unsafe action it would newly auto-approve, unless
    ``accept_risk``), and changes nothing then.
    """
    specs = policy.parse_document(document)
    groups = review_groups_known(specs)
    compiled = {spec.name: policy.compile_policy(spec, 0) for spec in specs}
    tests = policy.policy_tests_check(specs, compiled=compiled)
    with transaction.atomic():
        version = _next_policy_version()
        live = {t.name: selectors.compiled_policy_for(t) for t in ActionType.objects.filter(name__in=list(compiled))}
        report, accepted = _checked(
            [TypeChange(name, candidate, live.get(name)) for name, candidate in compiled.items()],
            accept_risk=accept_risk,
        )
        for spec in specs:
            _write_action_type(spec, version, groups)
        policy_version_record(
            version=version,
            source=source,
            actor=actor,
            changed=[s.name for s in specs],
            safety_net=report,
            accepted=accepted,
            mcp_servers=policy.mcp_servers_document(document),
        )
    return PolicyChange(version=version, tests=tests, safety_net=report, accepted=accepted)


def policies_import(*, document: Any, actor: str, source: str = "import", accept_risk: bool | Set[str] = False) -> int:
    """``policies_import_report``; returns the new gate-wide policy version."""
    return policies_import_report(document=document, actor=actor, source=source, accept_risk=accept_risk).version


def action_type_policy_changed(
    *,
    action_type: ActionType,
    actor: str,
    source: str = "admin",
    before: policy.ActionTypeSpec | None = None,
    accept_risk: bool | Set[str] = False,
) -> int:
    """After an edit of a type in the admin, in its transaction: validate it as a whole, run its
    tests and the safety net against ``before`` (the type's policy before the edit; None for a new
    type), and record a new version. Raises (the caller's transaction then undoes the edit)
    PolicyError, PolicyTestsFailed or UnsafePolicyChange."""
    spec = selectors.action_type_spec(action_type)
    policy.parse_action_type(spec.to_document(), action_type.name)
    candidate = policy.compile_policy(spec, 0)
    policy.policy_tests_check([spec], compiled={spec.name: candidate})
    with transaction.atomic():
        version = _next_policy_version()
        live = policy.compile_policy(before, 0) if before is not None else None
        report, accepted = _checked([TypeChange(spec.name, candidate, live)], accept_risk=accept_risk)
        ActionType.objects.filter(pk=action_type.pk).update(policy_version=version)
        action_type.policy_version = version
        policy_version_record(
            version=version,
            source=source,
            actor=actor,
            changed=[action_type.name],
            safety_net=report,
            accepted=accepted,
        )
    return version


def action_type_apply_thresholds(
    *,
    action_type: ActionType,
    auto_approve_max_risk: float,
    max_auto_amount: float | None,
    actor: str,
    accept_risk: bool | Set[str] = False,
) -> int:
    """Set a type's thresholds (a sweep's recommendation, say) as a new policy version, audited, once
    its tests and the safety net pass (PolicyError, PolicyTestsFailed, UnsafePolicyChange: nothing
    saved)."""
    with transaction.atomic():
        locked = ActionType.objects.select_for_update().get(pk=action_type.pk)
        live = selectors.compiled_policy_for(locked)
        before = {"auto_approve_max_risk": locked.auto_approve_max_risk, "max_auto_amount": locked.max_auto_amount}
        locked.auto_approve_max_risk = auto_approve_max_risk
        if locked.amount_path:
            locked.max_auto_amount = max_auto_amount
        spec = selectors.action_type_spec(locked)
        policy.parse_action_type(spec.to_document(), locked.name)  # PolicyError: nothing saved
        candidate = policy.compile_policy(spec, 0)
        policy.policy_tests_check([spec], compiled={spec.name: candidate})
        report, accepted = _checked([TypeChange(locked.name, candidate, live)], accept_risk=accept_risk)
        locked.save(update_fields=["auto_approve_max_risk", "max_auto_amount"])
        version = _next_policy_version()
        ActionType.objects.filter(pk=locked.pk).update(policy_version=version)
        action_type.refresh_from_db()
        policy_version_record(
            version=version,
            source="recommendation",
            actor=actor,
            changed=[locked.name],
            safety_net=report,
            accepted=accepted,
        )
        audit_record(
            action=None,
            event="thresholds_applied",
            actor=actor,
            data={
                "action_type": locked.name,
                "policy_version": version,
                "before": before,
                "after": {"auto_approve_max_risk": auto_approve_max_risk, "max_auto_amount": locked.max_auto_amount},
            },
        )
    return version
