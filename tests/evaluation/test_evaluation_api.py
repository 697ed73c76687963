"""The evaluation API (/api/v1/evaluation/...) and ``manage.py evaluate``."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from approvals.models import ActionType, AuditEvent, PolicyVersion, ProposedAction, Status
from approvals.review.services import action_decide, label_create
from tests.factories import AgentFactory, ProposedActionFactory, ReviewerFactory, UserFactory

pytestmark = pytest.mark.django_db

BASE = "/api/v1/evaluation/"
READS = ["figures", "agents", "sweep?action_type=refund", "rules?action_type=refund", "export.jsonl", "export.csv"]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def token_client(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def labelled(policy_v1: int) -> dict[str, ProposedAction]:
    """Three refunds with ground truth and one escalation without."""
    refund = ActionType.objects.get(name="refund")
    agent = AgentFactory(name="bot")
    reviewer = ReviewerFactory()
    common = {"action_type": refund, "agent": agent, "reached_thresholds": True, "confidence": 0.9}
    safe = ProposedActionFactory(
        **common,
        status=Status.AUTO_APPROVED,
        risk_score=0.1,
        amount=20.0,
        params={"order_id": "A-1", "amount": 20},
        findings=[{"rule": "order_was_looked_up", "outcome": "pass", "effect": "review", "message": ""}],
    )
    unsafe = ProposedActionFactory(
        **common,
        status=Status.NEEDS_REVIEW,
        risk_score=0.2,
        amount=150.0,
        params={"order_id": "A-2", "amount": 150},
        findings=[{"rule": "order_was_looked_up", "outcome": "fail", "effect": "review", "message": ""}],
    )
    other = ProposedActionFactory(
        **common, status=Status.AUTO_APPROVED, risk_score=0.0, amount=5.0, params={"order_id": "A-3", "amount": 5}
    )
    label_create(action=safe, author=reviewer, label="safe", tags=["audit", "ok"])
    action_decide(action_id=str(unsafe.pk), user=reviewer, verdict="reject")
    label_create(action=other, author=reviewer, label="safe")
    ProposedActionFactory(action_type=ActionType.objects.get(name="escalate_ticket"), agent=agent)
    return {"safe": safe, "unsafe": unsafe, "other": other}


# --- permissions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", READS)
def test_reads_are_for_reviewers(policy_v1, url, reviewer_client, agent_client):
    assert APIClient().get(BASE + url).status_code in (401, 403)
    assert agent_client.get(BASE + url).status_code == 403
    assert token_client(UserFactory()).get(BASE + url).status_code == 403
    assert reviewer_client.get(BASE + url).status_code == 200


def test_apply_is_for_admins(policy_v1, reviewer_client, agent_client):
    body = {"action_type": "refund", "auto_approve_max_risk": 0.2, "max_auto_amount": 80}
    assert APIClient().post(BASE + "sweep/apply", body, format="json").status_code in (401, 403)
    assert agent_client.post(BASE + "sweep/apply", body, format="json").status_code == 403
    assert reviewer_client.post(BASE + "sweep/apply", body, format="json").status_code == 403
    assert ActionType.objects.get(name="refund").auto_approve_max_risk == 0.3


# --- reads ----------------------------------------------------------------------------------------


def test_figures(labelled, reviewer_client):
    response = reviewer_client.get(BASE + "figures?group_by=action_type")

    assert response.status_code == 200
    body = response.json()
    assert body["group_by"] == "action_type"
    assert body["overall"]["total"] == 4
    assert body["overall"]["with_ground_truth"] == 3
    assert body["overall"]["labelled"] == 2
    assert body["overall"]["reviewer_reject_rate"] == 1.0
    assert body["overall"]["audit"]["bound"] == "one-sided 95% Clopper\u2013Pearson"
    assert [g["key"] for g in body["groups"]] == ["escalate_ticket", "refund"]
    refund = reviewer_client.get(BASE + "figures?action_type=refund&agent=bot&since=2000-01-01").json()
    assert refund["overall"]["total"] == 3
    assert refund["groups"] == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("group_by=week", "group_by"),
        ("since=yesterday", "since"),
        ("until=2024-13-45", "until"),
        ("since=2024-02-01&until=2024-01-01", "until"),
    ],
)
def test_figures_bad_query_is_400_json(policy_v1, reviewer_client, query, field):
    response = reviewer_client.get(f"{BASE}figures?{query}")

    assert response.status_code == 400
    assert field in response.json()


def test_agents(labelled, reviewer_client):
    body = reviewer_client.get(BASE + "agents?since=2000-01-01T00:00:00Z").json()

    assert [a["agent"] for a in body["agents"]] == ["bot"]
    bot = body["agents"][0]
    assert bot["proposed"] == 4
    assert bot["rejected_or_unsafe"] == 1
    assert set(bot) >= {
        "held_or_blocked_share",
        "rejected_or_unsafe_share",
        "repeated_identical",
        "repeated_share",
        "outcomes",
        "success_rate",
        "busy_without_progress",
        "reasons",
    }
    assert reviewer_client.get(BASE + "agents?until=nope").status_code == 400


def test_sweep(labelled, reviewer_client):
    body = reviewer_client.get(BASE + "sweep?action_type=refund").json()

    assert (body["action_type"], body["labelled"], body["safe"], body["unsafe"]) == ("refund", 3, 2, 1)
    assert body["current"]["auto_approve_max_risk"] == 0.3
    assert body["current"]["max_auto_amount"] == 100.0
    assert body["current"]["point"]["auto_approved"] == 2
    assert body["points"]
    recommendation = body["recommendation"]
    assert recommendation["unsafe_auto_approved"] == 0
    assert recommendation["auto_approved"] == 2
    assert (recommendation["auto_approve_max_risk"], recommendation["max_auto_amount"]) == (0.1, 20.0)


def test_sweep_and_rules_need_a_known_type(policy_v1, reviewer_client):
    for name in ("sweep", "rules"):
        missing = reviewer_client.get(f"{BASE}{name}")
        unknown = reviewer_client.get(f"{BASE}{name}?action_type=nope")
        assert missing.status_code == 400
        assert "action_type" in missing.json()
        assert unknown.status_code == 404
        assert unknown.json() == {"detail": "No action type named 'nope'."}


def test_rules(labelled, reviewer_client):
    body = reviewer_client.get(BASE + "rules?action_type=refund").json()

    assert body == {
        "action_type": "refund",
        "rules": [
            {
                "rule": "order_was_looked_up",
                "evaluated": 2,
                "failed": 1,
                "failed_safe": 0,
                "failed_unsafe": 1,
                "passed_unsafe": 0,
                "precision": 1.0,
            }
        ],
    }


def streamed(response: Any) -> str:
    return b"".join(response.streaming_content).decode()


def test_export_jsonl(labelled, reviewer_client):
    response = reviewer_client.get(BASE + "export.jsonl?action_type=refund")

    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="labelled.jsonl"'
    rows = [json.loads(line) for line in streamed(response).splitlines()]
    assert [r["id"] for r in rows] == [str(labelled[k].pk) for k in ("safe", "unsafe", "other")]
    assert [r["label"] for r in rows] == ["safe", "unsafe", "safe"]
    assert rows[0]["tags"] == ["audit", "ok"]
    assert rows[0]["params"] == {"order_id": "A-1", "amount": 20}
    assert reviewer_client.get(BASE + "export.jsonl?since=bad").status_code == 400


def test_export_csv(labelled, reviewer_client):
    response = reviewer_client.get(BASE + "export.csv")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == 'attachment; filename="labelled.csv"'
    rows = list(csv.DictReader(io.StringIO(streamed(response))))
    assert list(rows[0]) == [
        "id",
        "action_type",
        "agent",
        "status",
        "risk_score",
        "amount",
        "confidence",
        "ground_truth",
        "tags",
        "created_at",
        "decided_at",
    ]
    first = rows[0]
    assert first["id"] == str(labelled["safe"].pk)
    assert (first["action_type"], first["agent"], first["status"]) == ("refund", "bot", "auto_approved")
    assert (first["risk_score"], first["amount"], first["ground_truth"], first["tags"]) == (
        "0.1",
        "20.0",
        "safe",
        "audit;ok",
    )
    assert rows[1]["decided_at"]
    assert len(rows) == 3


# --- applying a recommendation --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["superuser", "change_actiontype"])
def test_admin_applies_thresholds(labelled, kind):
    if kind == "superuser":
        admin = UserFactory(username="boss", is_superuser=True, is_staff=True)
    else:
        admin = UserFactory(username="tuner", is_staff=True)
        admin.user_permissions.add(Permission.objects.get(codename="change_actiontype"))
    before = PolicyVersion.objects.order_by("-number").first().number
    recommendation = token_client(ReviewerFactory()).get(BASE + "sweep?action_type=refund").json()["recommendation"]

    response = token_client(admin).post(
        BASE + "sweep/apply",
        {
            "action_type": "refund",
            "auto_approve_max_risk": recommendation["auto_approve_max_risk"],
            "max_auto_amount": recommendation["max_auto_amount"],
        },
        format="json",
    )

    assert response.status_code == 200
    assert response.json() == {"policy_version": before + 1}
    refund = ActionType.objects.get(name="refund")
    assert (refund.auto_approve_max_risk, refund.max_auto_amount, refund.policy_version) == (0.1, 20.0, before + 1)
    event = AuditEvent.objects.get(event="thresholds_applied")
    assert event.actor == f"user:{admin.username}"
    assert event.data["after"] == {"auto_approve_max_risk": 0.1, "max_auto_amount": 20.0}
    assert PolicyVersion.objects.get(number=before + 1).source == "recommendation"


@pytest.mark.parametrize(
    "body",
    [
        {"action_type": "nope", "auto_approve_max_risk": 0.2},
        {"action_type": "refund", "auto_approve_max_risk": 1.5},
        {"action_type": "refund", "auto_approve_max_risk": "0.2"},
        {"action_type": "refund", "auto_approve_max_risk": 0.2, "max_auto_amount": -1},
        {"auto_approve_max_risk": 0.2},
    ],
)
def test_apply_refuses_bad_input(policy_v1, body):
    admin = UserFactory(username="boss", is_superuser=True, is_staff=True)

    response = token_client(admin).post(BASE + "sweep/apply", body, format="json")

    assert response.status_code == 400
    assert isinstance(response.json(), dict)
    assert not AuditEvent.objects.filter(event="thresholds_applied").exists()


# --- manage.py evaluate ---------------------------------------------------------------------------


def evaluate(*args: str) -> list[str]:
    out = io.StringIO()
    call_command("evaluate", *args, stdout=out)
    return out.getvalue().splitlines()


def test_evaluate_prints_contract_lines_then_the_new_figures(labelled):
    lines = evaluate()

    assert lines[0] == "total: 4"
    figures = dict(line.split(": ", 1) for line in lines)
    assert len(figures) == len(lines)
    names = list(figures)
    assert names.index("per_action_type.refund.total") < names.index("audit.bound")
    assert figures["per_action_type.refund.total"] == "3"
    assert figures["audit.bound"] == "one-sided 95% Clopper\u2013Pearson"
    assert figures["audit.unsafe_rate_upper_95"] == "null"
    assert figures["reviewer_reject_rate"] == "1.0"
    assert "time_to_decision_seconds.median" in figures
    assert figures["agents.bot.proposed"] == "4"
    assert figures["agents.bot.busy_without_progress"] == "false"
    assert figures["agents.bot.reasons"] == ""


def test_evaluate_filters(labelled):
    figures = dict(line.split(": ", 1) for line in evaluate("--agent", "nobody", "--until", "2100-01-01"))
    assert figures["total"] == "0"
    assert not any(name.startswith("agents.") for name in figures)

    refund = dict(line.split(": ", 1) for line in evaluate("--action-type", "refund", "--since", "2000-01-01"))
    assert refund["total"] == "3"
    assert refund["agents.bot.proposed"] == "3"
