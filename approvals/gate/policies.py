"""The policy store: importing a policy document, an admin's edit of a type, applying a sweep's
thresholds. Each change is validated as a whole, recorded as a new gate-wide policy version (a
snapshot of the whole document) and audited, all or nothing."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from approvals import policy
from approvals.gate import selectors
from approvals.lifecycle.audit import audit_record
from approvals.models import ActionType, PolicyVersion, Rule


def _next_policy_version() -> int:
    latest = PolicyVersion.objects.select_for_update().order_by("-number").first()
    return (latest.number if latest else 0) + 1


def _write_action_type(spec: policy.ActionTypeSpec, version: int) -> ActionType:
    fields = {
        name: getattr(spec, name)
        for name in policy.ActionTypeSpec.__dataclass_fields__
        if name not in ("name", "rules", "tests", *policy.EVIDENCE_FIELDS)
    }
    evidence = spec.evidence_document()
    fields.update(
        lookups=evidence.get("lookups", []),
        history=evidence.get("history", []),
        identity_params=evidence.get("identity_params"),
        tests=spec.tests_document(),
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


def policy_version_record(*, version: int, source: str, actor: str, changed: list[str]) -> PolicyVersion:
    """Snapshot the whole policy as version ``version``; call inside the changing transaction."""
    record = PolicyVersion.objects.create(
        number=version, source=source, created_by=actor, document=selectors.policy_document_current()
    )
    audit_record(
        action=None,
        event="policy_changed",
        actor=actor,
        data={"policy_version": version, "source": source, "action_types": changed},
    )
    return record


def policies_import(*, document: Any, actor: str, source: str = "import") -> int:
    """Create or replace the action types a policy document names, all or nothing.

    Raises PolicyError (listing every problem) and changes nothing when any part is invalid.
    Returns the new gate-wide policy version.
    """
    specs = policy.parse_document(document)
    with transaction.atomic():
        version = _next_policy_version()
        for spec in specs:
            _write_action_type(spec, version)
        policy_version_record(version=version, source=source, actor=actor, changed=[s.name for s in specs])
    return version


def action_type_policy_changed(*, action_type: ActionType, actor: str, source: str = "admin") -> int:
    """After an edit of a type in the admin: validate it as a whole and record a new version."""
    spec = selectors.action_type_spec(action_type)
    policy.parse_action_type(spec.to_document(), action_type.name)
    with transaction.atomic():
        version = _next_policy_version()
        ActionType.objects.filter(pk=action_type.pk).update(policy_version=version)
        action_type.policy_version = version
        policy_version_record(version=version, source=source, actor=actor, changed=[action_type.name])
    return version


def action_type_apply_thresholds(
    *, action_type: ActionType, auto_approve_max_risk: float, max_auto_amount: float | None, actor: str
) -> int:
    """Set a type's thresholds (a sweep's recommendation, say) as a new policy version, audited."""
    with transaction.atomic():
        locked = ActionType.objects.select_for_update().get(pk=action_type.pk)
        before = {"auto_approve_max_risk": locked.auto_approve_max_risk, "max_auto_amount": locked.max_auto_amount}
        locked.auto_approve_max_risk = auto_approve_max_risk
        if locked.amount_path:
            locked.max_auto_amount = max_auto_amount
        spec = selectors.action_type_spec(locked)
        policy.parse_action_type(spec.to_document(), locked.name)  # PolicyError: nothing saved
        locked.save(update_fields=["auto_approve_max_risk", "max_auto_amount"])
        version = _next_policy_version()
        ActionType.objects.filter(pk=locked.pk).update(policy_version=version)
        action_type.refresh_from_db()
        policy_version_record(version=version, source="recommendation", actor=actor, changed=[locked.name])
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
