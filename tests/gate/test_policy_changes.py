"""A policy change goes live only when its own tests pass and the labelled history, replayed under it,
shows no action labelled unsafe that it would newly auto-approve, unless accepted (contract §6.2):
import, an admin's edit and applied thresholds, on PostgreSQL with the real CEL binding."""

from __future__ import annotations

from typing import Any

import pytest

from approvals import policy
from approvals.errors import UnsafePolicyChange
from approvals.gate.policies import (
    action_type_apply_thresholds,
    action_type_policy_changed,
    policies_import,
    policies_import_report,
)
from approvals.gate.selectors import action_type_spec, policy_document_current
from approvals.models import ActionType, AuditEvent, PolicyVersion, Rule
from tests.conftest import LOOKED_UP, TEST_POLICY
from tests.labelled_history import amount_history, refund_policy

pytestmark = pytest.mark.django_db

HELD_ABOVE_100 = {
    "name": "150 is held",
    "proposal": {"params": {"order_id": "A-1", "amount": 150}, "trajectory": LOOKED_UP},
    "expect": "needs_review",
}


def state() -> tuple[Any, ...]:
    """What a refused change must leave as it was."""
    refund = ActionType.objects.get(name="refund")
    return (
        PolicyVersion.objects.count(),
        refund.policy_version,
        refund.max_auto_amount,
        list(Rule.objects.filter(action_type=refund).values_list("name", "require")),
        AuditEvent.objects.filter(event__startswith="policy_").count(),
        policy_document_current(),
    )


# --- policy tests ----------------------------------------------------------------------------------


def test_a_failing_test_refuses_the_import_and_changes_nothing() -> None:
    policies_import(document=TEST_POLICY, actor="test")
    before = state()
    document = refund_policy(max_auto_amount=200, rules=[], tests=[HELD_ABOVE_100])

    with pytest.raises(policy.PolicyTestsFailed) as refused:
        policies_import(document=document, actor="test")

    assert [failure.test.name for failure in refused.value.failures] == ["150 is held"]
    assert "expected needs_review, got auto_approved" in refused.value.errors[0]
    assert state() == before


def test_passing_tests_are_stored_with_the_type_and_exported() -> None:
    change = policies_import_report(document=refund_policy(tests=[HELD_ABOVE_100]), actor="test")

    assert [result.test.name for result in change.tests] == ["150 is held"]
    assert ActionType.objects.get(name="refund").tests == [HELD_ABOVE_100]
    assert policy_document_current()["action_types"][0]["tests"] == [HELD_ABOVE_100]
    assert PolicyVersion.objects.get(number=change.version).document["action_types"][0]["tests"] == [HELD_ABOVE_100]


def test_applied_thresholds_must_pass_the_types_tests() -> None:
    policies_import(document=refund_policy(tests=[HELD_ABOVE_100]), actor="test")
    refund = ActionType.objects.get(name="refund")
    before = state()

    with pytest.raises(policy.PolicyTestsFailed):
        action_type_apply_thresholds(action_type=refund, auto_approve_max_risk=0.3, max_auto_amount=200, actor="t")

    assert state() == before


def test_an_admin_edit_that_fails_its_tests_is_refused() -> None:
    policies_import(document=refund_policy(tests=[HELD_ABOVE_100]), actor="test")
    refund = ActionType.objects.get(name="refund")
    before_spec = action_type_spec(refund)
    refund.max_auto_amount = 200
    refund.save()

    with pytest.raises(policy.PolicyTestsFailed):
        action_type_policy_changed(action_type=refund, actor="user:root", before=before_spec)


# --- the safety net: raising max_auto_amount from 100 to 200 -------------------------------------


def test_raising_the_amount_limit_is_refused_naming_the_unsafe_action_it_would_let_through() -> None:
    actions = amount_history()
    before = state()

    with pytest.raises(UnsafePolicyChange) as refused:
        policies_import(document=refund_policy(max_auto_amount=200), actor="test")

    mid_unsafe = actions["mid_unsafe"]
    assert refused.value.cases == [
        {
            "id": str(mid_unsafe.id),
            "action_type": "refund",
            "summary": '{"amount": 150, "order_id": "A-1"}',
            "live_status": "needs_review",
        }
    ]
    # beside it, what the change gains: the safe refund of 180 it would newly automate
    assert refused.value.safe_newly_auto_approved == 1
    assert refused.value.replayed == 5
    assert str(mid_unsafe.id) in refused.value.message
    assert state() == before


def test_accepting_the_risk_lets_it_through_and_audits_the_accepted_actions() -> None:
    actions = amount_history()

    change = policies_import_report(document=refund_policy(max_auto_amount=200), actor="ops", accept_risk=True)

    assert ActionType.objects.get(name="refund").max_auto_amount == 200
    assert [case.id for case in change.accepted] == [str(actions["mid_unsafe"].id)]
    accepted = AuditEvent.objects.get(event="policy_risk_accepted")
    assert accepted.actor == "ops"
    assert accepted.data["policy_version"] == change.version
    assert [case["id"] for case in accepted.data["accepted"]] == [str(actions["mid_unsafe"].id)]
    assert accepted.data["safe_newly_auto_approved"] == 1
    changed = AuditEvent.objects.filter(event="policy_changed").latest("created_at", "id")
    assert changed.data["safety_net"] == {
        "replayed": 5,
        "safe_newly_auto_approved": 1,
        "unsafe_newly_auto_approved_accepted": [str(actions["mid_unsafe"].id)],
    }


def test_an_acceptance_covers_only_the_actions_it_names() -> None:
    actions = amount_history()
    before = state()

    with pytest.raises(UnsafePolicyChange):
        policies_import(document=refund_policy(max_auto_amount=200), actor="t", accept_risk={"some-other-id"})
    assert state() == before

    policies_import(document=refund_policy(max_auto_amount=200), actor="t", accept_risk={str(actions["mid_unsafe"].id)})
    assert ActionType.objects.get(name="refund").max_auto_amount == 200


def test_an_unsafe_action_the_live_policy_already_lets_through_is_not_newly_let_through() -> None:
    amount_history()  # auto_unsafe (30) is auto-approved now and would be under any higher limit

    change = policies_import_report(document=refund_policy(max_auto_amount=120), actor="test")

    assert change.safety_net.unsafe == ()
    assert change.safety_net.replayed == 5
    assert ActionType.objects.get(name="refund").max_auto_amount == 120


def test_a_stricter_change_newly_automates_nothing() -> None:
    amount_history()

    change = policies_import_report(document=refund_policy(max_auto_amount=10), actor="test")

    assert (change.safety_net.unsafe, change.safety_net.safe_newly_auto_approved) == ((), 0)


def test_applying_thresholds_is_refused_then_accepted() -> None:
    actions = amount_history()
    refund = ActionType.objects.get(name="refund")
    before = state()

    with pytest.raises(UnsafePolicyChange) as refused:
        action_type_apply_thresholds(action_type=refund, auto_approve_max_risk=0.3, max_auto_amount=200, actor="t")
    assert [case["id"] for case in refused.value.cases] == [str(actions["mid_unsafe"].id)]
    assert state() == before

    version = action_type_apply_thresholds(
        action_type=refund, auto_approve_max_risk=0.3, max_auto_amount=200, actor="t", accept_risk=True
    )
    assert ActionType.objects.get(name="refund").policy_version == version
    assert AuditEvent.objects.get(event="policy_risk_accepted").data["accepted"][0]["id"] == str(
        actions["mid_unsafe"].id
    )


def test_an_admin_edit_is_compared_with_the_policy_live_before_it() -> None:
    actions = amount_history()
    refund = ActionType.objects.get(name="refund")
    live = action_type_spec(refund)
    refund.max_auto_amount = 200
    refund.save()

    with pytest.raises(UnsafePolicyChange) as refused:
        action_type_policy_changed(action_type=refund, actor="user:root", before=live)
    assert [case["id"] for case in refused.value.cases] == [str(actions["mid_unsafe"].id)]

    version = action_type_policy_changed(action_type=refund, actor="user:root", before=live, accept_risk=True)
    assert PolicyVersion.objects.get(number=version).source == "admin"
