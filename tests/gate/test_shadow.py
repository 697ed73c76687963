"""Shadow mode (contract §6.2): ``import_policies --shadow`` stores a candidate policy; every
evaluation then evaluates it beside the live policy, on the same proposal and evidence, records its
decision and never acts on it; ``--promote-shadow`` makes it the policy."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from approvals.gate.services import action_evaluate, action_propose
from approvals.gate.shadow import shadow_policy_import
from approvals.models import (
    ActionType,
    AuditEvent,
    OutboxEvent,
    PolicyVersion,
    ProposedAction,
    Rule,
    ShadowPolicy,
    ShadowResult,
    Status,
)
from approvals.review.services import label_create
from tests.conftest import LOOKED_UP, TEST_POLICY
from tests.evidence.records import Records, records
from tests.factories import ReviewerFactory

pytestmark = pytest.mark.django_db

__all__ = ["records"]  # the fixture: a system of record on loopback

REFUND = TEST_POLICY["action_types"][0]


def candidate(**refund: Any) -> dict[str, Any]:
    """A shadow document naming only the refund type: the live refund policy with ``refund`` changed."""
    return {"version": 1, "action_types": [{**copy.deepcopy(REFUND), **refund}]}


def run(*args: Any) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def write(tmp_path: Path, document: Any, name: str = "shadow.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return str(path)


def refund(propose: Any, amount: float, *, trajectory: Any = LOOKED_UP, order_id: str = "A-1") -> dict[str, Any]:
    response = propose(
        {"action_type": "refund", "params": {"order_id": order_id, "amount": amount}, "trajectory": trajectory}
    )
    assert response.status_code == 201, response.content
    return response.action


def shadow_of(action: dict[str, Any]) -> ShadowResult:
    return ShadowResult.objects.get(action_id=action["id"])


# --- storing a shadow -------------------------------------------------------------------------------


def test_a_shadow_import_replaces_the_earlier_one_and_leaves_the_live_policy(policy_v1: int, tmp_path: Path) -> None:
    live_versions = list(PolicyVersion.objects.values_list("number", flat=True))

    # when: two shadow imports, one after the other
    first = run("import_policies", "--shadow", write(tmp_path, candidate(max_auto_amount=200)))
    second = run("import_policies", "--shadow", write(tmp_path, candidate(max_auto_amount=300), "second.json"))

    # then: the second is the shadow, the first ended; the live policy is untouched
    assert "stored as shadow policy v1 for refund" in first
    assert "stored as shadow policy v2 (replaces shadow v1) for refund" in second
    shadows = {s.version: s for s in ShadowPolicy.objects.all()}
    assert (shadows[1].active, shadows[2].active) == (False, True)
    assert shadows[1].ended_at is not None
    assert shadows[2].ended_at is None
    assert shadows[2].document["action_types"][0]["max_auto_amount"] == 300
    assert list(PolicyVersion.objects.values_list("number", flat=True)) == live_versions
    assert ActionType.objects.get(name="refund").max_auto_amount == 100
    audited = AuditEvent.objects.filter(event="shadow_policy_imported").order_by("seq")
    assert [(e.data["shadow_policy_version"], e.data["replaces"]) for e in audited] == [(1, None), (2, 1)]
    assert {e.actor for e in audited} == {"command:import_policies"}


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (candidate(rules=[{"name": "bad", "require": "params.amount >"}]), "rules[0].require"),
        (candidate(mode="sometimes"), "mode"),
        ({"version": 2, "action_types": []}, "version: must be 1"),
    ],
)
def test_an_invalid_shadow_is_refused_like_a_live_import_and_changes_nothing(
    policy_v1: int, tmp_path: Path, broken: dict[str, Any], message: str
) -> None:
    run("import_policies", "--shadow", write(tmp_path, candidate(max_auto_amount=200)))
    events = AuditEvent.objects.count()

    with pytest.raises(CommandError) as refused:
        run("import_policies", "--shadow", write(tmp_path, broken, "broken.json"))

    assert "nothing was stored, the shadow policy is unchanged" in str(refused.value)
    assert message in str(refused.value)
    assert list(ShadowPolicy.objects.values_list("version", "active")) == [(1, True)]
    assert AuditEvent.objects.count() == events


def test_the_command_says_what_it_needs(policy_v1: int, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="FILE is required"):
        run("import_policies", "--shadow")
    with pytest.raises(CommandError, match="takes no FILE"):
        run("import_policies", "--promote-shadow", write(tmp_path, candidate()))
    with pytest.raises(CommandError, match="no shadow policy to promote"):
        run("import_policies", "--promote-shadow")
    with pytest.raises(CommandError, match="not allowed with argument"):
        run("import_policies", "--shadow", "--promote-shadow", write(tmp_path, candidate()))


def test_a_shadow_import_reports_what_it_would_newly_auto_approve_but_is_never_refused_for_it(
    policy_v1: int, propose: Any, tmp_path: Path
) -> None:
    # given: the live policy held three refunds above 100; a reviewer labelled two unsafe, one safe
    reviewer = ReviewerFactory()
    held = [refund(propose, amount) for amount in (150, 180, 500)]
    for action, label in zip(held, ("unsafe", "safe", "unsafe"), strict=True):
        label_create(action=ProposedAction.objects.get(pk=action["id"]), author=reviewer, label=label)

    # when: a shadow that auto-approves up to 200
    output = run("import_policies", "--shadow", write(tmp_path, candidate(max_auto_amount=200)))

    # then: stored, and the report names the unsafe one it would let through and counts the safe one
    assert ShadowPolicy.objects.get(active=True).version == 1
    assert "it would newly auto-approve 1 safe and 1 unsafe action(s)" in output
    assert f"unsafe {held[0]['id']} (refund): needs_review by the policy then, held by amount" in output
    assert held[2]["id"] not in output  # 500 is above the shadow's limit too
    event = AuditEvent.objects.get(event="shadow_policy_imported")
    assert event.data["unsafe_newly_auto_approved"] == [held[0]["id"]]
    assert event.data["safe_newly_auto_approved"] == 1


# --- evaluating beside the live policy --------------------------------------------------------------


def test_every_evaluation_records_the_shadow_decision_and_never_acts_on_it(policy_v1: int, propose: Any) -> None:
    shadow_policy_import(document=candidate(max_auto_amount=200), actor="test")

    # when: proposals the two policies agree and disagree on, and one of a type the shadow does not name
    small = refund(propose, 20)
    middle = refund(propose, 150)
    unlooked = refund(propose, 20, order_id="A-9", trajectory=[])
    response = propose({"action_type": "escalate_ticket", "params": {"ticket": "T-1"}})
    escalated = response.action

    # then: the live decisions are the live policy's
    assert (small["status"], middle["status"], unlooked["status"]) == ("auto_approved", "needs_review", "needs_review")
    assert escalated["status"] == "needs_review"
    # and the shadow's are recorded beside them
    assert (shadow_of(small).status, shadow_of(small).live_status) == ("auto_approved", "auto_approved")
    assert (shadow_of(middle).status, shadow_of(middle).live_status) == ("auto_approved", "needs_review")
    assert shadow_of(middle).failed == []
    assert (shadow_of(unlooked).status, shadow_of(unlooked).failed) == ("needs_review", ["order_was_looked_up"])
    assert {r.shadow_policy_version for r in ShadowResult.objects.all()} == {1}
    assert not ShadowResult.objects.filter(action_id=escalated["id"]).exists()  # the type keeps the live policy
    # never acted on: each action has the live policy's one evaluation, one announcement, no decision by
    # the shadow
    for action in (small, middle, unlooked):
        trail = list(AuditEvent.objects.filter(action_id=action["id"]).values_list("event", flat=True))
        assert trail == ["proposed", "evaluated"]
        assert OutboxEvent.objects.filter(action_id=action["id"]).count() == 1
    assert ProposedAction.objects.get(pk=middle["id"]).status == Status.NEEDS_REVIEW
    assert not hasattr(ProposedAction.objects.get(pk=middle["id"]), "decision")


def test_the_shadow_reads_the_evidence_the_live_policy_gathered_without_a_second_lookup(
    policy_v1: int, propose: Any, records: Records, settings: Any, tmp_path: Path
) -> None:
    settings.GATE_LOOKUP_ALLOW_PRIVATE = True
    lookup = {"name": "order", "url": records.url + "/orders/{params.order_id}"}
    live = candidate(
        lookups=[lookup], rules=[{"name": "within_order", "require": "params.amount <= lookups.order.total"}]
    )
    run("import_policies", write(tmp_path, live, "live.json"))
    # the shadow trusts the order's total only up to half of it
    shadow_policy_import(
        document=candidate(
            lookups=[lookup], rules=[{"name": "half_the_order", "require": "params.amount * 2 <= lookups.order.total"}]
        ),
        actor="test",
    )

    action = refund(propose, 60)  # the order's total is 80

    assert action["status"] == "auto_approved"
    assert (shadow_of(action).status, shadow_of(action).failed) == ("needs_review", ["half_the_order"])
    assert records.paths() == ["/orders/A-1"]  # asked once, by the live policy's evaluation


def test_a_shadow_that_fails_is_recorded_as_its_error_and_the_live_decision_stands(
    policy_v1: int, propose: Any
) -> None:
    # given: a stored shadow whose document no longer parses (as one stored by a release whose policy
    # format differed would), so compiling it raises in the worker
    ShadowPolicy.objects.create(
        version=1, document={"version": 1, "action_types": [{"name": "refund", "mode": "sometimes"}]}, active=True
    )

    action = refund(propose, 20)

    # then: the live decision is the live policy's, made and announced as ever
    assert action["status"] == "auto_approved"
    assert action["decision"]["by"] == "policy"
    result = shadow_of(action)
    assert (result.status, result.live_status) == ("error", "auto_approved")
    assert result.error.startswith("PolicyError")
    assert "params_schema" in result.error


def test_a_shadow_rule_that_errs_holds_in_the_shadow_only(policy_v1: int, propose: Any) -> None:
    shadow_policy_import(
        document=candidate(rules=[{"name": "needs_a_currency", "require": "params.currency == 'EUR'"}]), actor="test"
    )

    action = refund(propose, 20)

    assert action["status"] == "auto_approved"
    assert (shadow_of(action).status, shadow_of(action).failed) == ("needs_review", ["needs_a_currency"])


def test_with_a_shadow_an_evaluation_costs_one_statement_more_and_without_none(policy_v1: int, agent: Any) -> None:
    refund_type = ActionType.objects.get(name="refund")

    def pending(order_id: str) -> str:
        action, _ = action_propose(
            agent=agent,
            action_type=refund_type,
            params={"order_id": order_id, "amount": 20},
            fingerprint=order_id.ljust(64, "f"),
            trajectory_raw=LOOKED_UP,
        )
        return str(action.id)

    def statements(order_id: str) -> int:
        action_id = pending(order_id)
        with CaptureQueriesContext(connection) as ctx:
            action_evaluate(action_id=action_id)
        return len(ctx.captured_queries)

    action_evaluate(action_id=pending("A-warm"))  # the live policy compiled, once per version
    without = statements("A-1")
    shadow_policy_import(document=candidate(max_auto_amount=200), actor="test")
    action_evaluate(action_id=pending("A-warm-2"))  # the shadow read and compiled, once per process
    with_shadow = statements("A-2")

    assert with_shadow == without + 1  # the shadow's result, one INSERT after the live decision
    assert ShadowResult.objects.count() == 2


# --- promotion ----------------------------------------------------------------------------------------


def test_promoting_the_shadow_imports_it_as_the_live_policy_and_ends_shadow_mode(
    policy_v1: int, propose: Any, tmp_path: Path
) -> None:
    run("import_policies", "--shadow", write(tmp_path, candidate(max_auto_amount=200)))

    output = run("import_policies", "--promote-shadow")

    version = PolicyVersion.objects.order_by("-number").first()
    assert version is not None
    assert version.number == policy_v1 + 1
    assert version.source == "shadow_promotion"
    assert f"promoted shadow policy v1 (refund) as policy_version {version.number}" in output
    refund_type = ActionType.objects.get(name="refund")
    assert (refund_type.max_auto_amount, refund_type.policy_version) == (200, version.number)
    assert list(Rule.objects.filter(action_type=refund_type).values_list("name", flat=True)) == ["order_was_looked_up"]
    shadow = ShadowPolicy.objects.get(version=1)
    assert (shadow.active, shadow.promoted_to) == (False, version.number)
    events = list(AuditEvent.objects.filter(action=None).order_by("seq").values_list("event", "data"))
    assert events[-2:] == [
        (
            "policy_changed",
            {
                "policy_version": version.number,
                "source": "shadow_promotion",
                "action_types": ["refund"],
                # promoted through the safety net of every live change (no labelled history here)
                "safety_net": {"replayed": 0, "safe_newly_auto_approved": 0, "unsafe_newly_auto_approved_accepted": []},
            },
        ),
        ("shadow_policy_promoted", {"shadow_policy_version": 1, "policy_version": version.number}),
    ]
    # the live policy now decides as the shadow did, and no shadow is evaluated
    action = refund(propose, 150)
    assert action["status"] == "auto_approved"
    assert not ShadowResult.objects.exists()
    with pytest.raises(CommandError, match="no shadow policy to promote"):
        run("import_policies", "--promote-shadow")


def test_a_promotion_the_import_refuses_changes_nothing(policy_v1: int) -> None:
    # given: a shadow stored before a check it no longer passes (written directly, as by an older release)
    ShadowPolicy.objects.create(
        version=1, document={"version": 1, "action_types": [{"name": "refund", "mode": "sometimes"}]}, active=True
    )
    events = AuditEvent.objects.count()

    with pytest.raises(CommandError, match="the shadow policy was not promoted, nothing changed"):
        run("import_policies", "--promote-shadow")

    assert PolicyVersion.objects.order_by("-number").first().number == policy_v1  # type: ignore[union-attr]
    assert ShadowPolicy.objects.get(version=1).active
    assert AuditEvent.objects.count() == events
