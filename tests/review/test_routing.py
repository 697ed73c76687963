"""Routing by review group (contract §6.3): only the members of a type's ``review_group`` (and, once
an action is escalated, of its ``escalation_group``) and superusers see its held actions and may
decide them; others get 403 and nothing changes. The API, the desk and the policy file."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from approvals.gate import selectors as gate_selectors
from approvals.gate.policies import policies_import
from approvals.gate.policy_diff import policy_diff
from approvals.gate.shadow import shadow_policy_import
from approvals.models import (
    ActionType,
    AuditEvent,
    Decision,
    Label,
    PolicyVersion,
    ProposedAction,
    ShadowPolicy,
    Status,
)
from approvals.policy import PolicyError
from approvals.review.services import action_escalate
from tests.review.routing_setup import ESCALATION_GROUP, REVIEW_GROUP, Routed, held, routed_gate, routed_policy
from tests.test_admin import form as admin_form

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def gate() -> Routed:
    return routed_gate()


def api(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def desk(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def queue_ids(user: User) -> set[str]:
    response = api(user).get("/api/v1/review/queue")
    assert response.status_code == 200
    return {item["id"] for item in response.json()["results"]}


def nothing_decided(action: ProposedAction) -> None:
    action.refresh_from_db()
    assert action.status == Status.NEEDS_REVIEW
    assert action.decided_at is None
    assert not Decision.objects.filter(action=action).exists()
    assert not AuditEvent.objects.filter(action=action, event="decided").exists()


# --- the API ------------------------------------------------------------------------------------


def test_the_queue_shows_a_grouped_type_to_its_members_and_superusers_only(gate: Routed) -> None:
    refund, ticket = held(gate.agent), held(gate.agent, "escalate_ticket")

    assert queue_ids(gate.member) == {str(refund.id), str(ticket.id)}
    assert queue_ids(gate.superuser) == {str(refund.id), str(ticket.id)}
    # a type without a review group is every reviewer's
    assert queue_ids(gate.outsider) == {str(ticket.id)}
    assert queue_ids(gate.escalator) == {str(ticket.id)}


def test_a_decision_by_a_reviewer_outside_the_group_is_refused_with_403_and_changes_nothing(gate: Routed) -> None:
    refund = held(gate.agent)

    response = api(gate.outsider).post(f"/api/v1/actions/{refund.id}/decision", {"verdict": "approve"}, format="json")

    assert response.status_code == 403
    assert set(response.json()) == {"detail"}
    assert "may not review this action" in response.json()["detail"]
    nothing_decided(refund)


def test_members_and_superusers_decide(gate: Routed) -> None:
    first, second = held(gate.agent, order="A-1"), held(gate.agent, order="A-2")

    by_member = api(gate.member).post(f"/api/v1/actions/{first.id}/decision", {"verdict": "approve"}, format="json")
    by_root = api(gate.superuser).post(f"/api/v1/actions/{second.id}/decision", {"verdict": "reject"}, format="json")

    assert (by_member.status_code, by_member.json()["status"]) == (200, "approved")
    assert (by_root.status_code, by_root.json()["status"]) == (200, "rejected")


def test_the_escalation_group_sees_and_decides_an_action_only_once_it_is_escalated(gate: Routed) -> None:
    refund = held(gate.agent)
    decide = lambda: api(gate.escalator).post(  # noqa: E731
        f"/api/v1/actions/{refund.id}/decision", {"verdict": "approve"}, format="json"
    )

    assert str(refund.id) not in queue_ids(gate.escalator)
    assert decide().status_code == 403
    nothing_decided(refund)

    assert refund.sla_deadline is not None
    assert action_escalate(action_id=str(refund.id), now=refund.sla_deadline + timedelta(seconds=1))

    assert str(refund.id) in queue_ids(gate.escalator)
    assert str(refund.id) not in queue_ids(gate.outsider)
    response = decide()
    assert (response.status_code, response.json()["status"]) == (200, "approved")


def test_labels_of_a_grouped_type_are_its_reviewers(gate: Routed) -> None:
    refund = held(gate.agent)
    url = f"/api/v1/actions/{refund.id}/labels"

    assert api(gate.outsider).get(url).status_code == 403
    assert api(gate.outsider).post(url, {"label": "unsafe"}, format="json").status_code == 403
    assert not Label.objects.filter(action=refund).exists()
    assert api(gate.member).post(url, {"label": "safe"}, format="json").status_code == 201


def test_an_unknown_action_is_still_404(gate: Routed) -> None:
    missing = "00000000-0000-0000-0000-000000000000"
    response = api(gate.outsider).post(f"/api/v1/actions/{missing}/decision", {"verdict": "approve"}, format="json")
    assert response.status_code == 404


# --- the desk -----------------------------------------------------------------------------------


def test_the_desk_queue_its_tabs_and_count_follow_the_group(gate: Routed) -> None:
    refund, ticket = held(gate.agent), held(gate.agent, "escalate_ticket")

    member_page = desk(gate.member).get("/review/")
    outsider_page = desk(gate.outsider).get("/review/")

    assert str(refund.id) in member_page.content.decode()
    assert member_page.context["page"].paginator.count == 2
    assert str(refund.id) not in outsider_page.content.decode()
    assert str(ticket.id) in outsider_page.content.decode()
    assert outsider_page.context["page"].paginator.count == 1
    # the decided tab too
    api(gate.member).post(f"/api/v1/actions/{refund.id}/decision", {"verdict": "approve"}, format="json")
    assert str(refund.id) in desk(gate.member).get("/review/?tab=decided").content.decode()
    assert str(refund.id) not in desk(gate.outsider).get("/review/?tab=decided").content.decode()


def test_the_desk_refuses_an_outsider_the_detail_the_decision_the_claim_and_the_row(gate: Routed) -> None:
    refund = held(gate.agent)
    outsider = desk(gate.outsider)

    detail = outsider.get(f"/review/{refund.id}")
    assert detail.status_code == 403
    assert b"may not review this action" in detail.content
    assert outsider.post(f"/review/{refund.id}/decide", {"verdict": "approve"}).status_code == 403
    assert outsider.post(f"/review/{refund.id}/claim").status_code == 403
    assert outsider.post(f"/review/{refund.id}/label", {"label": "safe"}).status_code == 403
    assert outsider.get(f"/review/{refund.id}/row").status_code == 404
    nothing_decided(refund)
    assert refund.claimed_by_id is None
    assert not Label.objects.filter(action=refund).exists()

    member = desk(gate.member)
    assert member.get(f"/review/{refund.id}").status_code == 200
    assert member.post(f"/review/{refund.id}/decide", {"verdict": "reject"}).status_code == 302
    refund.refresh_from_db()
    assert refund.status == Status.REJECTED


def test_after_a_decision_the_desk_goes_to_the_next_action_the_reviewer_may_review(gate: Routed) -> None:
    first, other = held(gate.agent, "escalate_ticket", order="T-1"), held(gate.agent)

    response = desk(gate.outsider).post(f"/review/{first.id}/decide", {"verdict": "approve"})

    assert response.status_code == 302
    assert str(other.id) not in response["Location"]


def test_the_queue_page_costs_the_same_queries_for_three_rows_and_for_ten(gate: Routed) -> None:
    def queries_of_the_page() -> int:
        client = desk(gate.member)
        client.get("/review/")  # the session and the user, read once
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/review/").status_code == 200
        return len(captured)

    for index in range(3):
        held(gate.agent, order=f"A-{index}")
    three = queries_of_the_page()
    for index in range(3, 10):
        held(gate.agent, order=f"A-{index}")
    assert queries_of_the_page() == three


# --- the policy file ----------------------------------------------------------------------------


def test_an_unknown_group_is_refused_with_its_place_and_nothing_is_saved(gate: Routed) -> None:
    before = PolicyVersion.objects.count()

    with pytest.raises(PolicyError) as refused:
        policies_import(document=routed_policy(review_group="refundz"), actor="test")

    assert refused.value.errors == [
        "action_types[0] (refund).review_group: there is no group 'refundz' "
        "(create it in the admin, under Authentication and Authorization, or correct the name)"
    ]
    assert PolicyVersion.objects.count() == before
    assert ActionType.objects.get(name="refund").review_group.name == REVIEW_GROUP  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"review_group": ""}, "action_types[0] (refund).review_group: must be the name of a Django group"),
        ({"review_group": 7}, "action_types[0] (refund).review_group: must be the name of a Django group"),
        (
            {"escalation_group": ESCALATION_GROUP},
            "action_types[0] (refund).escalation_group: needs review_group",
        ),
    ],
)
def test_malformed_group_fields_are_refused_with_their_place(gate: Routed, fields: dict[str, Any], error: str) -> None:
    with pytest.raises(PolicyError) as refused:
        policies_import(document=routed_policy(**fields), actor="test")
    assert any(message.startswith(error) for message in refused.value.errors), refused.value.errors


def test_an_escalation_group_needs_a_review_sla(gate: Routed) -> None:
    document = routed_policy()
    del document["action_types"][0]["review_sla_minutes"]
    with pytest.raises(PolicyError) as refused:
        policies_import(document=document, actor="test")
    assert refused.value.errors == [
        "action_types[0] (refund).escalation_group: "
        "needs review_sla_minutes (the group joins once the review SLA passes)"
    ]


def test_the_groups_are_exported_and_import_back_to_the_same_policy(gate: Routed) -> None:
    exported = gate_selectors.policy_document_current()
    refund = next(t for t in exported["action_types"] if t["name"] == "refund")
    ticket = next(t for t in exported["action_types"] if t["name"] == "escalate_ticket")
    assert (refund["review_group"], refund["escalation_group"]) == (REVIEW_GROUP, ESCALATION_GROUP)
    assert "review_group" not in ticket  # a type without groups exports as it always did

    policies_import(document=exported, actor="test")

    assert gate_selectors.policy_document_current() == exported


def test_a_policy_diff_shows_a_change_of_review_group(gate: Routed) -> None:
    before = gate_selectors.policy_document_current()
    after = routed_policy(review_group=ESCALATION_GROUP, escalation_group=None)

    refund = next(change for change in policy_diff(before, after).action_types if change.name == "refund")

    changed = {field.name: (field.before, field.after) for field in refund.fields}
    assert changed["review_group"] == (REVIEW_GROUP, ESCALATION_GROUP)
    assert changed["escalation_group"] == (ESCALATION_GROUP, None)


def test_a_shadow_policy_naming_an_unknown_group_is_refused_at_its_import(gate: Routed) -> None:
    with pytest.raises(PolicyError) as refused:
        shadow_policy_import(document=routed_policy(review_group="nobody"), actor="test")
    assert refused.value.errors[0].startswith("action_types[0] (refund).review_group: there is no group 'nobody'")
    assert not ShadowPolicy.objects.exists()


# --- the admin ----------------------------------------------------------------------------------


def test_the_admin_sets_a_types_review_groups_as_a_new_policy_version(gate: Routed) -> None:
    admin = desk(gate.superuser)
    groups = {group.name: group.pk for group in Group.objects.all()}

    response = admin.post(
        "/admin/approvals/actiontype/add/",
        admin_form(name="payout", review_group=groups[REVIEW_GROUP], review_sla_minutes="10"),
    )
    refused = admin.post(
        "/admin/approvals/actiontype/add/", admin_form(name="wire", escalation_group=groups[ESCALATION_GROUP])
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    payout = ActionType.objects.get(name="payout")
    assert payout.review_group_id == groups[REVIEW_GROUP]
    document = PolicyVersion.objects.get(number=payout.policy_version).document
    assert next(t for t in document["action_types"] if t["name"] == "payout")["review_group"] == REVIEW_GROUP
    assert refused.status_code == 200
    assert "needs review_group" in refused.content.decode()
    assert not ActionType.objects.filter(name="wire").exists()
