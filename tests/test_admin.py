"""The admin edits the same policy fields, refuses invalid schemas and rules, and versions changes."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from approvals.gate.services import action_propose
from approvals.models import ActionType, AuditEvent, PolicyVersion, Rule
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client: Client) -> Client:
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


def form(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "refund",
        "description": "",
        "enabled": "on",
        "mode": "gate",
        "params_schema": '{"type": "object"}',
        "base_risk": "0.1",
        "auto_approve_max_risk": "0.5",
        "block_min_risk": "",
        "min_confidence": "",
        "amount_path": "",
        "max_auto_amount": "",
        "audit_sample_rate": "0",
        "builtin_checks": "on",
        "review_sla_minutes": "",
        "expire_after_minutes": "",
        "rules-TOTAL_FORMS": "1",
        "rules-INITIAL_FORMS": "0",
        "rules-MIN_NUM_FORMS": "0",
        "rules-MAX_NUM_FORMS": "1000",
        "rules-0-position": "0",
        "rules-0-name": "looked_up",
        "rules-0-require": "size(trajectory) > 0",
        "rules-0-on_fail": "review",
        "rules-0-risk": "0",
        "rules-0-message": "",
    }
    data.update(overrides)
    return data


def test_admin_saves_a_type_with_rules_as_a_new_policy_version(admin_client: Client) -> None:
    response = admin_client.post("/admin/approvals/actiontype/add/", form())

    assert response.status_code == 302, response.content.decode()[:2000]
    action_type = ActionType.objects.get(name="refund")
    assert list(action_type.rules.values_list("name", flat=True)) == ["looked_up"]
    assert action_type.policy_version == 1
    version = PolicyVersion.objects.get(number=1)
    assert version.source == "admin"
    assert version.created_by == "user:root"
    assert version.document["action_types"][0]["rules"][0]["require"] == "size(trajectory) > 0"
    assert AuditEvent.objects.filter(event="policy_changed", actor="user:root").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"params_schema": '{"type": "objekt"}'}, "invalid JSON Schema"),
        ({"params_schema": "[1, 2]"}, "must be a JSON Schema object"),
        ({"rules-0-require": "params.("}, "invalid CEL"),
        ({"rules-0-name": "risk"}, "reserved"),
        ({"base_risk": "1.5"}, "must be between 0 and 1"),
        ({"max_auto_amount": "100"}, "is required when max_auto_amount is set"),
        ({"max_auto_amount": "-5", "amount_path": "amount"}, "must be &gt;= 0"),
        ({"rules-0-on_fail": "block", "rules-0-risk": "2"}, "must be between 0.0 and 1.0"),
    ],
)
def test_admin_refuses_invalid_policies_before_saving(admin_client: Client, overrides: dict, message: str) -> None:
    response = admin_client.post("/admin/approvals/actiontype/add/", form(**overrides))

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not ActionType.objects.exists()
    assert not Rule.objects.exists()
    assert not PolicyVersion.objects.exists()


def test_admin_cannot_edit_statuses_or_add_agents(admin_client: Client) -> None:
    assert admin_client.get("/admin/approvals/proposedaction/add/").status_code == 403
    assert admin_client.get("/admin/approvals/agent/add/").status_code == 403
    assert admin_client.get("/admin/approvals/auditevent/add/").status_code == 403


def test_webhook_failures_are_listed_and_can_be_redelivered(admin_client: Client, policy_v1: int) -> None:
    pass
    from approvals.models import ActionType, AuditEvent, WebhookDelivery
    from tests.factories import AgentFactory

    agent = AgentFactory()
    action, _ = action_propose(
        agent=agent,
        action_type=ActionType.objects.get(name="refund"),
        params={"order_id": "A-1", "amount": 1},
        fingerprint="f",
        callback_url="http://localhost:9/hooks",
    )
    failed = WebhookDelivery.objects.create(
        action=action,
        event="action.evaluated",
        url=action.callback_url,
        body="{}",
        state="failed",
        last_error="HTTP 500",
    )
    listing = admin_client.get("/admin/approvals/webhookdelivery/?state__exact=failed")
    assert listing.status_code == 200
    assert "HTTP 500" in listing.content.decode()

    response = admin_client.post(
        "/admin/approvals/webhookdelivery/",
        {"action": "redeliver", "_selected_action": [failed.pk]},
        follow=True,
    )
    assert "Queued 1 redelivery." in response.content.decode()
    again = WebhookDelivery.objects.exclude(pk=failed.pk).get()
    assert (again.body, again.event, again.url) == ("{}", "action.evaluated", failed.url)
    assert AuditEvent.objects.filter(action=action, event="webhook_redelivered", actor="user:root").count() == 1


def test_an_agent_edited_in_the_admin_is_changed_through_the_service_and_audited(admin_client: Client) -> None:
    from approvals.models import Agent, AuditEvent
    from tests.factories import ActionTypeFactory, AgentFactory

    agent = AgentFactory(name="support-bot", rate_limit_per_minute=None)
    refund = ActionTypeFactory(name="refund")

    response = admin_client.post(
        f"/admin/approvals/agent/{agent.pk}/change/",
        {
            "name": "support-bot",
            "enabled": "",
            "all_action_types": "",
            "action_types": [refund.pk],
            "rate_limit_per_minute": "30",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    agent = Agent.objects.get(pk=agent.pk)
    assert (agent.enabled, agent.all_action_types, agent.rate_limit_per_minute) == (False, False, 30)
    assert list(agent.action_types.values_list("name", flat=True)) == ["refund"]
    event = AuditEvent.objects.get(event="agent_changed")
    assert event.actor.startswith("user:")
    assert event.data["agent"] == "support-bot"
    assert event.data["changed"]["enabled"] == {"before": True, "after": False}
    assert event.data["changed"]["rate_limit_per_minute"] == {"before": None, "after": 30}
    assert event.data["changed"]["action_types"] == {"before": [], "after": ["refund"]}
    assert "name" not in event.data["changed"]
