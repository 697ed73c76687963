"""Contract §3: the reviewer API, the evaluation figures and ``manage.py evaluate``."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from approvals.models import ActionType, AuditEvent, Decision, Label, ProposedAction, Status
from approvals.review.services import action_decide, label_create
from tests.factories import (
    AgentFactory,
    ProposedActionFactory,
    ReviewerFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

ALL_STATUSES = {
    "pending",
    "needs_review",
    "auto_approved",
    "approved",
    "rejected",
    "blocked",
    "expired",
    "cancelled",
}


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # Full-strength PBKDF2 costs a noticeable fraction of a second per user; these tests make many.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def action_of(type_name: str, status: str = Status.NEEDS_REVIEW, **fields: Any) -> ProposedAction:
    return ProposedActionFactory(action_type=ActionType.objects.get(name=type_name), status=status, **fields)


def token_client(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


# --- the queue --------------------------------------------------------------------------------------


def test_queue_lists_only_needs_review(policy_v1, reviewer_client):
    # given one action in every status
    by_status = {status: action_of("refund", status) for status in Status.values}

    # when
    response = reviewer_client.get("/api/v1/review/queue")

    # then
    assert response.status_code == 200
    assert [a["id"] for a in response.json()["results"]] == [str(by_status[Status.NEEDS_REVIEW].id)]
    assert response.json()["results"][0]["status"] == "needs_review"


def test_queue_order_escalated_then_sla_then_risk(policy_v1, reviewer_client):
    # given
    now = timezone.now()
    late_low = action_of("refund", sla_deadline=now + timedelta(hours=2), risk_score=0.1)
    late_high = action_of("refund", sla_deadline=now + timedelta(hours=2), risk_score=0.9)
    soon = action_of("refund", sla_deadline=now + timedelta(minutes=5), risk_score=0.0)
    no_sla_high = action_of("refund", sla_deadline=None, risk_score=0.8)
    no_sla_no_risk = action_of("refund", sla_deadline=None, risk_score=None)
    escalated_late = action_of("refund", escalated=True, sla_deadline=now + timedelta(hours=3), risk_score=0.2)
    escalated_soon = action_of("refund", escalated=True, sla_deadline=now + timedelta(hours=1), risk_score=0.1)

    # when
    response = reviewer_client.get("/api/v1/review/queue")

    # then
    expected = [escalated_soon, escalated_late, soon, late_high, late_low, no_sla_high, no_sla_no_risk]
    assert [a["id"] for a in response.json()["results"]] == [str(a.id) for a in expected]


def test_queue_equal_keys_oldest_first(policy_v1, reviewer_client):
    first = action_of("refund", risk_score=0.5)
    second = action_of("refund", risk_score=0.5)

    ids = [a["id"] for a in reviewer_client.get("/api/v1/review/queue").json()["results"]]

    assert ids == [str(first.id), str(second.id)]


def test_queue_filter_by_action_type(policy_v1, reviewer_client):
    refund = action_of("refund")
    escalation = action_of("escalate_ticket")

    refunds = reviewer_client.get("/api/v1/review/queue?action_type=refund").json()
    escalations = reviewer_client.get("/api/v1/review/queue?action_type=escalate_ticket").json()
    nothing = reviewer_client.get("/api/v1/review/queue?action_type=no_such_type").json()

    assert [a["id"] for a in refunds["results"]] == [str(refund.id)]
    assert [a["id"] for a in escalations["results"]] == [str(escalation.id)]
    assert nothing == {"count": 0, "next": None, "previous": None, "results": []}


def test_queue_is_paged(policy_v1, reviewer_client):
    # given one more held action than fits a page
    ProposedActionFactory.create_batch(
        51, action_type=ActionType.objects.get(name="refund"), status=Status.NEEDS_REVIEW
    )

    # when
    first = reviewer_client.get("/api/v1/review/queue").json()
    second = reviewer_client.get(first["next"]).json()

    # then
    assert set(first) == {"count", "next", "previous", "results"}
    assert first["count"] == 51
    assert len(first["results"]) == 50
    assert first["previous"] is None
    assert first["next"]
    assert second["count"] == 51
    assert len(second["results"]) == 1
    assert second["next"] is None
    assert second["previous"]
    assert {a["id"] for a in first["results"]}.isdisjoint({a["id"] for a in second["results"]})


def test_queue_items_use_the_action_representation(policy_v1, propose, reviewer_client):
    created = propose({"action_type": "refund", "params": {"order_id": "A-7", "amount": 5}}).action

    [item] = reviewer_client.get("/api/v1/review/queue").json()["results"]

    assert item == created


# --- decisions ----------------------------------------------------------------------------------------


@pytest.fixture
def held(policy_v1, propose) -> dict[str, Any]:
    """A refund for an order never looked up: held for review."""
    action = propose({"action_type": "refund", "params": {"order_id": "A-9", "amount": 20}}).action
    assert action["status"] == "needs_review"
    return action


def test_approve(held, reviewer_client, reviewer):
    # when
    response = reviewer_client.post(
        f"{held['url']}/decision", {"verdict": "approve", "reason": "checked by phone"}, format="json"
    )

    # then
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == held["id"]
    assert body["status"] == "approved"
    assert body["decision"]["verdict"] == "approve"
    assert body["decision"]["by"] == reviewer.username
    assert body["decision"]["reason"] == "checked by phone"
    assert body["decision"]["at"]
    assert body["decided_at"]
    event = AuditEvent.objects.get(action_id=held["id"], event="decided")
    assert (event.actor, event.from_status, event.to_status) == ("user:lead", "needs_review", "approved")


def test_reject_without_reason(held, reviewer_client, reviewer):
    response = reviewer_client.post(f"{held['url']}/decision", {"verdict": "reject"}, format="json")

    assert response.status_code == 200
    assert response.json()["status"] == "rejected"
    assert response.json()["decision"] == {
        **response.json()["decision"],
        "verdict": "reject",
        "by": "lead",
        "reason": "",
    }


def test_agent_sees_the_reviewers_decision(held, reviewer_client, agent_client):
    reviewer_client.post(f"{held['url']}/decision", {"verdict": "approve"}, format="json")

    seen = agent_client.get(held["url"]).json()

    assert seen["status"] == "approved"
    assert seen["decision"]["by"] == "lead"


def test_second_decision_409(held, reviewer_client):
    # given
    assert reviewer_client.post(f"{held['url']}/decision", {"verdict": "approve"}, format="json").status_code == 200

    # when another reviewer decides too
    other = token_client(ReviewerFactory())
    response = other.post(f"{held['url']}/decision", {"verdict": "reject"}, format="json")

    # then
    assert response.status_code == 409
    assert "detail" in response.json()
    assert ProposedAction.objects.get(pk=held["id"]).status == Status.APPROVED
    assert Decision.objects.filter(action_id=held["id"]).count() == 1
    assert AuditEvent.objects.filter(action_id=held["id"], event="decided").count() == 1


@pytest.mark.parametrize("status", [s for s in Status.values if s != "needs_review"])
def test_decision_on_an_action_not_needing_review_409(policy_v1, reviewer_client, status):
    action = action_of("refund", status)

    response = reviewer_client.post(f"/api/v1/actions/{action.id}/decision", {"verdict": "approve"}, format="json")

    assert response.status_code == 409
    assert "detail" in response.json()
    action.refresh_from_db()
    assert action.status == status
    assert not Decision.objects.filter(action=action).exists()


@pytest.mark.parametrize(
    "body", [{"verdict": "maybe"}, {"verdict": ""}, {}, {"verdict": None}, {"verdict": ["approve"]}]
)
def test_bad_verdict_400(held, reviewer_client, body):
    response = reviewer_client.post(f"{held['url']}/decision", body, format="json")

    assert response.status_code == 400
    assert "verdict" in response.json()
    assert ProposedAction.objects.get(pk=held["id"]).status == Status.NEEDS_REVIEW


def test_decision_not_json_400(held, reviewer_client):
    response = reviewer_client.post(f"{held['url']}/decision", data="{oops", content_type="application/json")

    assert response.status_code == 400
    assert "detail" in response.json()


def test_decision_on_unknown_action_404(policy_v1, reviewer_client):
    response = reviewer_client.post(f"/api/v1/actions/{uuid.uuid4()}/decision", {"verdict": "approve"}, format="json")

    assert response.status_code == 404
    assert "detail" in response.json()


def test_reviewer_can_read_any_action(held, reviewer_client):
    response = reviewer_client.get(held["url"])

    assert response.status_code == 200
    assert response.json()["id"] == held["id"]


# --- labels -------------------------------------------------------------------------------------------


def test_label_an_auto_approved_action(policy_v1, reviewer_client, reviewer):
    # given
    action = action_of("refund", Status.AUTO_APPROVED)

    # when
    response = reviewer_client.post(
        f"/api/v1/actions/{action.id}/labels",
        {"label": "unsafe", "tags": ["wrong-amount", "fraud:suspected"], "note": "refunded twice"},
        format="json",
    )

    # then
    assert response.status_code == 201
    body = response.json()
    assert body["label"] == "unsafe"
    assert body["tags"] == ["wrong-amount", "fraud:suspected"]
    assert body["note"] == "refunded twice"
    assert body["author"] == reviewer.username
    assert body["created_at"]
    label = Label.objects.get(action=action)
    assert (label.label, label.author, label.tags) == ("unsafe", reviewer, ["wrong-amount", "fraud:suspected"])
    action.refresh_from_db()
    assert action.status == Status.AUTO_APPROVED


@pytest.mark.parametrize("status", Status.values)
def test_any_action_can_be_labelled(policy_v1, reviewer_client, status):
    action = action_of("refund", status)

    response = reviewer_client.post(f"/api/v1/actions/{action.id}/labels", {"label": "safe"}, format="json")

    assert response.status_code == 201
    assert response.json()["tags"] == []
    assert response.json()["note"] == ""


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"label": "maybe"}, "label"),
        ({}, "label"),
        ({"label": "safe", "tags": "wrong"}, "tags"),
        ({"label": "safe", "tags": ["has space"]}, "tags"),
        ({"label": "safe", "tags": [""]}, "tags"),
        ({"label": "safe", "tags": [f"t{i}" for i in range(21)]}, "tags"),
    ],
)
def test_invalid_label_400(policy_v1, reviewer_client, body, field):
    action = action_of("refund", Status.AUTO_APPROVED)

    response = reviewer_client.post(f"/api/v1/actions/{action.id}/labels", body, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert not Label.objects.exists()


def test_label_unknown_action_404(policy_v1, reviewer_client):
    response = reviewer_client.post(f"/api/v1/actions/{uuid.uuid4()}/labels", {"label": "safe"}, format="json")

    assert response.status_code == 404


def test_labels_newest_first(policy_v1, reviewer_client):
    # given
    action = action_of("refund", Status.AUTO_APPROVED)
    url = f"/api/v1/actions/{action.id}/labels"
    for value, note in (("safe", "first"), ("unsafe", "second"), ("safe", "third")):
        assert reviewer_client.post(url, {"label": value, "note": note}, format="json").status_code == 201

    # when
    response = reviewer_client.get(url)

    # then
    assert response.status_code == 200
    assert [(lbl["label"], lbl["note"]) for lbl in response.json()] == [
        ("safe", "third"),
        ("unsafe", "second"),
        ("safe", "first"),
    ]


# --- evaluation summary -------------------------------------------------------------------------------


def label(action: ProposedAction, value: str, author: Any) -> None:
    label_create(action=action, author=author, label=value)


def decide(action: ProposedAction, verdict: str, reviewer: Any) -> None:
    action_decide(action_id=str(action.id), user=reviewer, verdict=verdict)


@pytest.fixture
def history(policy_v1, reviewer) -> None:
    """refund: 4 auto-approved (1 unsafe, 1 unsafe-then-safe, 1 safe-then-unsafe, 1 unlabelled),
    1 approved by a reviewer, 1 rejected by a reviewer, 1 held, 1 pending;
    escalate_ticket: 1 auto-approved labelled unsafe, 1 approved then labelled unsafe, 1 blocked."""
    unsafe = action_of("refund", Status.AUTO_APPROVED)
    label(unsafe, "unsafe", reviewer)
    corrected_safe = action_of("refund", Status.AUTO_APPROVED)
    label(corrected_safe, "unsafe", reviewer)
    label(corrected_safe, "safe", reviewer)
    corrected_unsafe = action_of("refund", Status.AUTO_APPROVED)
    label(corrected_unsafe, "safe", reviewer)
    label(corrected_unsafe, "unsafe", reviewer)
    action_of("refund", Status.AUTO_APPROVED)
    decide(action_of("refund"), "approve", reviewer)
    decide(action_of("refund"), "reject", reviewer)
    action_of("refund", Status.NEEDS_REVIEW)
    action_of("refund", Status.PENDING)

    label(action_of("escalate_ticket", Status.AUTO_APPROVED), "unsafe", reviewer)
    approved = action_of("escalate_ticket")
    decide(approved, "approve", reviewer)
    label(approved, "unsafe", reviewer)
    action_of("escalate_ticket", Status.BLOCKED)


def zeros(**counts: int) -> dict[str, int]:
    return {status: counts.get(status, 0) for status in ALL_STATUSES}


def test_summary_figures(history, reviewer_client):
    response = reviewer_client.get("/api/v1/evaluation/summary")

    assert response.status_code == 200
    assert response.json() == {
        "total": 11,
        "by_status": zeros(auto_approved=5, approved=2, rejected=1, needs_review=1, pending=1, blocked=1),
        "automation_rate": pytest.approx(5 / 10),
        "labelled": 5,
        "unsafe_auto_approved": 3,
        "per_action_type": {
            "escalate_ticket": {
                "total": 3,
                "by_status": zeros(auto_approved=1, approved=1, blocked=1),
                "automation_rate": pytest.approx(1 / 3),
                "labelled": 2,
                "unsafe_auto_approved": 1,
            },
            "refund": {
                "total": 8,
                "by_status": zeros(auto_approved=4, approved=1, rejected=1, needs_review=1, pending=1),
                "automation_rate": pytest.approx(4 / 7),
                "labelled": 3,
                "unsafe_auto_approved": 2,
            },
        },
    }


def test_summary_filtered_by_action_type(history, reviewer_client):
    summary = reviewer_client.get("/api/v1/evaluation/summary?action_type=escalate_ticket").json()

    assert summary["total"] == 3
    assert summary["by_status"] == zeros(auto_approved=1, approved=1, blocked=1)
    assert summary["unsafe_auto_approved"] == 1
    assert list(summary["per_action_type"]) == ["escalate_ticket"]


def test_summary_of_nothing(policy_v1, reviewer_client):
    summary = reviewer_client.get("/api/v1/evaluation/summary").json()

    assert summary == {
        "total": 0,
        "by_status": zeros(),
        "automation_rate": None,
        "labelled": 0,
        "unsafe_auto_approved": 0,
        "per_action_type": {},
    }


def test_automation_rate_is_null_when_everything_is_pending(policy_v1, reviewer_client):
    action_of("refund", Status.PENDING)

    summary = reviewer_client.get("/api/v1/evaluation/summary").json()

    assert summary["total"] == 1
    assert summary["by_status"]["pending"] == 1
    assert summary["automation_rate"] is None
    assert summary["per_action_type"]["refund"]["automation_rate"] is None


def test_reviewer_decision_is_ground_truth_without_a_label(policy_v1, reviewer, reviewer_client):
    # given a rejected action (ground truth unsafe, no explicit label) and an approved one
    decide(action_of("refund"), "reject", reviewer)
    decide(action_of("refund"), "approve", reviewer)

    summary = reviewer_client.get("/api/v1/evaluation/summary").json()

    # then neither counts as labelled, and no auto-approval is unsafe
    assert summary["labelled"] == 0
    assert summary["unsafe_auto_approved"] == 0
    assert summary["automation_rate"] == 0


def test_summary_since(history, reviewer_client):
    ProposedAction.objects.filter(action_type__name="escalate_ticket").update(
        created_at=timezone.now() - timedelta(days=10)
    )
    since = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

    summary = reviewer_client.get(f"/api/v1/evaluation/summary?since={since}").json()

    assert summary["total"] == 8
    assert list(summary["per_action_type"]) == ["refund"]


def test_summary_bad_since_400(policy_v1, reviewer_client):
    response = reviewer_client.get("/api/v1/evaluation/summary?since=yesterday")

    assert response.status_code == 400
    assert "since" in response.json()


# --- access -------------------------------------------------------------------------------------------

REVIEWER_CALLS = [
    ("get", "/api/v1/review/queue", None),
    ("get", "/api/v1/evaluation/summary", None),
    ("post", "/api/v1/actions/{id}/decision", {"verdict": "approve"}),
    ("post", "/api/v1/actions/{id}/labels", {"label": "safe"}),
    ("get", "/api/v1/actions/{id}/labels", None),
    ("get", "/api/v1/remembered-approvals", None),
]


def call(client: APIClient, method: str, path: str, body: Any, action: ProposedAction) -> Any:
    url = path.format(id=action.id)
    if method == "get":
        return client.get(url)
    return client.post(url, body, format="json")


@pytest.mark.parametrize(("method", "path", "body"), REVIEWER_CALLS)
def test_anonymous_401(policy_v1, method, path, body):
    action = action_of("refund")

    response = call(APIClient(), method, path, body, action)

    assert response.status_code == 401
    assert "detail" in response.json()
    action.refresh_from_db()
    assert action.status == Status.NEEDS_REVIEW
    assert not Label.objects.exists()


@pytest.mark.parametrize(("method", "path", "body"), REVIEWER_CALLS)
def test_agent_token_403(policy_v1, agent, method, path, body):
    action = action_of("refund", agent=agent)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {agent.token}")

    response = call(client, method, path, body, action)

    assert response.status_code == 403
    assert "detail" in response.json()
    action.refresh_from_db()
    assert action.status == Status.NEEDS_REVIEW


@pytest.mark.parametrize(("method", "path", "body"), REVIEWER_CALLS)
def test_user_without_permission_403(policy_v1, method, path, body):
    action = action_of("refund")

    response = call(token_client(UserFactory()), method, path, body, action)

    assert response.status_code == 403
    action.refresh_from_db()
    assert action.status == Status.NEEDS_REVIEW


def test_logged_in_user_without_permission_403(policy_v1):
    client = APIClient()
    assert client.login(username=UserFactory(username="visitor").username, password="correct-horse-battery")

    assert client.get("/api/v1/review/queue").status_code == 403
    assert client.get("/api/v1/evaluation/summary").status_code == 403


def test_user_without_permission_cannot_read_actions(policy_v1):
    action = action_of("refund")

    assert token_client(UserFactory()).get(f"/api/v1/actions/{action.id}").status_code == 403


def test_superuser_is_a_reviewer(policy_v1):
    # given a superuser outside the reviewers group
    admin = UserFactory(username="root", is_superuser=True, is_staff=True)
    action = action_of("refund")
    client = token_client(admin)

    # then
    assert client.get("/api/v1/review/queue").status_code == 200
    response = client.post(f"/api/v1/actions/{action.id}/decision", {"verdict": "reject"}, format="json")
    assert response.status_code == 200
    assert response.json()["decision"]["by"] == "root"


def test_session_login_works(policy_v1):
    # given a reviewer logged in through the browser session
    user = ReviewerFactory(username="browser-lead")
    client = APIClient()
    assert client.login(username=user.username, password="correct-horse-battery")
    action = action_of("refund")

    # then
    assert client.get("/api/v1/review/queue").json()["count"] == 1
    response = client.post(f"/api/v1/actions/{action.id}/decision", {"verdict": "approve"}, format="json")
    assert response.status_code == 200
    assert response.json()["decision"]["by"] == "browser-lead"


def test_session_post_needs_csrf(policy_v1):
    user = ReviewerFactory()
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    action = action_of("refund")

    response = client.post(f"/api/v1/actions/{action.id}/decision", {"verdict": "approve"}, format="json")

    assert response.status_code == 403
    action.refresh_from_db()
    assert action.status == Status.NEEDS_REVIEW


def test_disabled_agent_does_not_make_a_reviewer(policy_v1):
    agent = AgentFactory(enabled=False)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {agent.token}")

    assert client.get("/api/v1/review/queue").status_code == 403


# --- manage.py evaluate -------------------------------------------------------------------------------


def evaluate(*args: str) -> list[str]:
    out = io.StringIO()
    call_command("evaluate", *args, stdout=out)
    return out.getvalue().splitlines()


def test_evaluate_command_prints_the_summary(history):
    lines = evaluate()

    assert lines[0] == "total: 11"
    figures = dict(line.split(": ", 1) for line in lines)
    assert len(figures) == len(lines)
    assert figures["automation_rate"] == "0.5"
    assert figures["labelled"] == "5"
    assert figures["unsafe_auto_approved"] == "3"
    assert {f"by_status.{status}" for status in ALL_STATUSES} <= figures.keys()
    assert figures["by_status.auto_approved"] == "5"
    assert figures["by_status.expired"] == "0"
    assert figures["per_action_type.refund.total"] == "8"
    assert figures["per_action_type.refund.unsafe_auto_approved"] == "2"
    assert figures["per_action_type.refund.by_status.pending"] == "1"
    assert figures["per_action_type.escalate_ticket.total"] == "3"
    assert figures["per_action_type.escalate_ticket.labelled"] == "2"


def test_evaluate_command_filters(history):
    lines = evaluate("--action-type", "refund")

    figures = dict(line.split(": ", 1) for line in lines)
    assert lines[0] == "total: 8"
    assert not any(name.startswith("per_action_type.escalate_ticket") for name in figures)


def test_evaluate_command_since(history):
    tomorrow = (timezone.now() + timedelta(days=1)).date().isoformat()

    lines = evaluate("--since", tomorrow)

    assert lines[0] == "total: 0"
    assert "automation_rate: null" in lines


def test_evaluate_command_bad_since():
    with pytest.raises(CommandError, match="--since"):
        evaluate("--since", "last tuesday")
