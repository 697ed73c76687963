"""Slack (contract §6.3), against its published formats: Slack itself is not reachable from the
tests, so a loopback receiver (slack_receiver.py) stands in for the incoming webhook, the
response_url and the Web API, and the clicks are built as Slack documents its block_actions payload
and its v0 request signature."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client

from approvals.models import AuditEvent, Decision, Notification, ProposedAction, ReviewerProfile
from approvals.notifications.services import slack_message_update
from tests.factories import ReviewerFactory, UserFactory
from tests.notifications.conftest import SIGNING_SECRET
from tests.notifications.slack_receiver import CHANNEL, TS, SlackReceiver

pytestmark = pytest.mark.usefixtures("wire_policy")

HELD = {"action_type": "wire", "params": {"account": "DE-1", "amount": 5000}}
INTERACTIONS = "/integrations/slack/interactions"


def slack_signed(body: str, timestamp: str, secret: str = SIGNING_SECRET) -> str:
    """Slack's v0 signature, written here from its documentation (not the gate's code)."""
    return "v0=" + hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()


def click_body(action_id: str, *, user: str, action: str = "gate_approve", response_url: str = "") -> str:
    """A block_actions payload as Slack sends it for a button click, form-encoded."""
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0GATE"},
        "api_app_id": "A0GATE",
        "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": TS, "channel_id": CHANNEL, "is_ephemeral": False},
        "trigger_id": "1234.5678.abcdef",
        "team": {"id": "T0GATE", "domain": "example"},
        "channel": {"id": CHANNEL, "name": "gate-reviews"},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action,
                "block_id": f"gate_decide:{action_id}",
                "text": {"type": "plain_text", "text": "Approve" if action == "gate_approve" else "Reject"},
                "value": action_id,
                "style": "primary" if action == "gate_approve" else "danger",
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)})


def post_click(body: str, *, timestamp: str | None = None, signature: str | None = None, capture: Any = None) -> Any:
    timestamp = timestamp or str(int(time.time()))
    headers = {
        "HTTP_X_SLACK_REQUEST_TIMESTAMP": timestamp,
        "HTTP_X_SLACK_SIGNATURE": signature or slack_signed(body, timestamp),
    }
    with capture(execute=True):
        return Client().post(INTERACTIONS, data=body, content_type="application/x-www-form-urlencoded", **headers)


@pytest.fixture
def lead(db: None) -> Any:
    user = ReviewerFactory(username="lead")
    ReviewerProfile.objects.create(user=user, slack_user_id="U0LEAD")
    return user


def _blocks_of(kind: str, message: dict[str, Any]) -> list[dict[str, Any]]:
    return [block for block in message["blocks"] if block["type"] == kind]


def _held(propose: Any) -> str:
    response = propose(HELD)
    assert response.status_code == 201
    assert response.action["status"] == "needs_review"
    return str(response.action["id"])


def _unchanged(action_id: str) -> None:
    action = ProposedAction.objects.get(pk=action_id)
    assert action.status == "needs_review"
    assert not Decision.objects.filter(action=action).exists()
    assert not AuditEvent.objects.filter(action=action, event="decided").exists()


# --- the message of a held action -------------------------------------------------------------


def test_a_held_action_is_posted_as_block_kit_with_approve_and_reject_buttons(
    slack_webhook_mode: SlackReceiver, propose: Any
) -> None:
    action_id = _held(propose)

    [post] = slack_webhook_mode.wait_for("/services/T0/B0/hook")
    message = post["json"]
    assert post["headers"]["Content-Type"].startswith("application/json")
    assert "wire" in message["text"]
    assert "support-bot" in message["text"]
    sections = "\n".join(block["text"]["text"] for block in _blocks_of("section", message))
    assert "*wire* proposed by *support-bot*" in sections
    assert "risk *" in sections
    assert "`under_limit` (fail): wires of 1000 or more need a person" in sections
    assert '"amount": 5000' in sections
    assert '"account": "DE-1"' in sections
    [context] = _blocks_of("context", message)
    assert f"<https://gate.example.com/review/{action_id}|Open on the review desk>" in context["elements"][0]["text"]
    [actions] = _blocks_of("actions", message)
    approve, reject = actions["elements"]
    assert approve == {
        "type": "button",
        "text": {"type": "plain_text", "text": "Approve"},
        "style": "primary",
        "action_id": "gate_approve",
        "value": action_id,
    }
    assert reject["style"] == "danger"
    assert reject["action_id"] == "gate_reject"
    assert reject["value"] == action_id
    assert Notification.objects.get(action_id=action_id, channel="slack").state == "sent"


def test_a_type_with_notify_slack_off_is_not_posted(slack_webhook_mode: SlackReceiver, propose: Any) -> None:
    from approvals.gate.policies import policies_import
    from tests.notifications.conftest import wire_type

    policies_import(document={"version": 1, "action_types": [wire_type(notify_slack=False)]}, actor="test")
    action_id = _held(propose)

    assert not Notification.objects.filter(action_id=action_id, channel="slack").exists()
    assert slack_webhook_mode.to("/services/T0/B0/hook") == []


# --- clicks ----------------------------------------------------------------------------------


def test_a_click_on_approve_decides_as_the_mapped_reviewer_and_updates_the_message(
    slack_webhook_mode: SlackReceiver, propose: Any, lead: Any, django_capture_on_commit_callbacks: Any
) -> None:
    action_id = _held(propose)
    body = click_body(action_id, user="U0LEAD", response_url=slack_webhook_mode.url("/actions/T0/1/abc"))

    response = post_click(body, capture=django_capture_on_commit_callbacks)

    assert response.status_code == 200
    action = ProposedAction.objects.get(pk=action_id)
    assert action.status == "approved"
    assert Decision.objects.get(action=action).reviewer == lead
    decided = AuditEvent.objects.get(action=action, event="decided")
    assert decided.actor == "user:lead"
    [update] = slack_webhook_mode.wait_for("/actions/T0/1/abc")
    assert update["json"]["replace_original"] is True
    assert _blocks_of("actions", update["json"]) == []  # no buttons any more
    assert "*Approved by <@U0LEAD>*" in [b["text"]["text"] for b in _blocks_of("section", update["json"])]
    assert update["json"]["text"].startswith("Approved by <@U0LEAD>")


def test_a_click_on_reject_rejects(
    slack_webhook_mode: SlackReceiver, propose: Any, lead: Any, django_capture_on_commit_callbacks: Any
) -> None:
    action_id = _held(propose)
    body = click_body(
        action_id, user="U0LEAD", action="gate_reject", response_url=slack_webhook_mode.url("/actions/T0/2/def")
    )

    assert post_click(body, capture=django_capture_on_commit_callbacks).status_code == 200

    assert ProposedAction.objects.get(pk=action_id).status == "rejected"
    [update] = slack_webhook_mode.wait_for("/actions/T0/2/def")
    assert update["json"]["text"].startswith("Rejected by <@U0LEAD>")


def test_a_click_from_an_unmapped_slack_user_is_refused_and_changes_nothing(
    slack_webhook_mode: SlackReceiver, propose: Any, lead: Any, django_capture_on_commit_callbacks: Any
) -> None:
    action_id = _held(propose)
    body = click_body(action_id, user="U0STRANGER", response_url=slack_webhook_mode.url("/actions/T0/3/ghi"))

    response = post_click(body, capture=django_capture_on_commit_callbacks)

    assert response.status_code == 200  # Slack is answered; the user is told
    _unchanged(action_id)
    [reply] = slack_webhook_mode.wait_for("/actions/T0/3/ghi")
    assert reply["json"]["response_type"] == "ephemeral"
    assert reply["json"]["replace_original"] is False
    assert "U0STRANGER" in reply["json"]["text"]
    assert "nothing was decided" in reply["json"]["text"]


def test_a_click_from_a_mapped_user_without_the_reviewer_permission_is_refused(
    slack_webhook_mode: SlackReceiver, propose: Any, django_capture_on_commit_callbacks: Any
) -> None:
    ReviewerProfile.objects.create(user=UserFactory(username="intern"), slack_user_id="U0INTERN")
    action_id = _held(propose)
    body = click_body(action_id, user="U0INTERN", response_url=slack_webhook_mode.url("/actions/T0/4/jkl"))

    assert post_click(body, capture=django_capture_on_commit_callbacks).status_code == 200

    _unchanged(action_id)
    [reply] = slack_webhook_mode.wait_for("/actions/T0/4/jkl")
    assert reply["json"]["response_type"] == "ephemeral"
    assert "may not decide" in reply["json"]["text"]


def test_a_click_on_an_action_decided_already_is_told_so(
    slack_webhook_mode: SlackReceiver, propose: Any, lead: Any, django_capture_on_commit_callbacks: Any
) -> None:
    action_id = _held(propose)
    first = click_body(action_id, user="U0LEAD", response_url=slack_webhook_mode.url("/actions/T0/5/a"))
    second = click_body(action_id, user="U0LEAD", action="gate_reject", response_url=slack_webhook_mode.url("/r/b"))
    post_click(first, capture=django_capture_on_commit_callbacks)

    assert post_click(second, capture=django_capture_on_commit_callbacks).status_code == 200

    assert ProposedAction.objects.get(pk=action_id).status == "approved"
    [reply] = slack_webhook_mode.wait_for("/r/b")
    assert reply["json"]["response_type"] == "ephemeral"
    assert "Not rejected: action is approved, not needs_review" in reply["json"]["text"]


# --- signatures --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "timestamp_offset", "secret"),
    [
        ("bad signature", 0, "not-the-signing-secret"),
        ("older than 5 minutes", -301, SIGNING_SECRET),
        ("more than 5 minutes in the future", 301, SIGNING_SECRET),
    ],
)
def test_a_request_slack_did_not_sign_now_is_refused_and_changes_nothing(
    slack_webhook_mode: SlackReceiver,
    propose: Any,
    lead: Any,
    django_capture_on_commit_callbacks: Any,
    case: str,
    timestamp_offset: int,
    secret: str,
) -> None:
    action_id = _held(propose)
    body = click_body(action_id, user="U0LEAD", response_url=slack_webhook_mode.url("/actions/T0/6/x"))
    timestamp = str(int(time.time()) + timestamp_offset)

    response = post_click(
        body,
        timestamp=timestamp,
        signature=slack_signed(body, timestamp, secret),
        capture=django_capture_on_commit_callbacks,
    )

    assert response.status_code == 401, case
    assert response.json()["detail"]
    _unchanged(action_id)
    assert slack_webhook_mode.to("/actions/T0/6/x") == []


def test_a_tampered_body_is_refused(
    slack_webhook_mode: SlackReceiver, propose: Any, lead: Any, django_capture_on_commit_callbacks: Any
) -> None:
    action_id = _held(propose)
    timestamp = str(int(time.time()))
    signed_for = click_body(action_id, user="U0STRANGER")
    sent = click_body(action_id, user="U0LEAD")

    response = post_click(
        sent,
        timestamp=timestamp,
        signature=slack_signed(signed_for, timestamp),
        capture=django_capture_on_commit_callbacks,
    )

    assert response.status_code == 401
    _unchanged(action_id)


def test_a_replayed_request_is_refused(
    slack_webhook_mode: SlackReceiver, propose: Any, lead: Any, django_capture_on_commit_callbacks: Any
) -> None:
    first_action, second_action = _held(propose), _held(propose)  # two held actions
    timestamp = str(int(time.time()))
    body = click_body(first_action, user="U0LEAD", action="gate_reject")
    signature = slack_signed(body, timestamp)
    assert (
        post_click(
            body, timestamp=timestamp, signature=signature, capture=django_capture_on_commit_callbacks
        ).status_code
        == 200
    )

    replayed = post_click(body, timestamp=timestamp, signature=signature, capture=django_capture_on_commit_callbacks)

    assert replayed.status_code == 403
    assert "replay" in replayed.json()["detail"]
    assert ProposedAction.objects.get(pk=first_action).status == "rejected"
    assert AuditEvent.objects.filter(action_id=first_action, event="decided").count() == 1
    _unchanged(second_action)


def test_without_a_signing_secret_every_click_is_refused(
    slack: SlackReceiver, propose: Any, lead: Any, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    settings.GATE_SLACK_SIGNING_SECRET = ""
    action_id = _held(propose)
    body = click_body(action_id, user="U0LEAD")

    assert post_click(body, capture=django_capture_on_commit_callbacks).status_code == 401
    _unchanged(action_id)


def test_a_malformed_body_is_a_400(slack_webhook_mode: SlackReceiver, django_capture_on_commit_callbacks: Any) -> None:
    body = "payload=%7Bnot-json"

    response = post_click(body, capture=django_capture_on_commit_callbacks)

    assert response.status_code == 400
    assert "payload" in response.json()["detail"]


# --- bot-token mode: every later change updates the message ---------------------------------------


def test_bot_mode_posts_with_chat_post_message_and_an_api_decision_updates_it(
    slack_bot_mode: SlackReceiver, propose: Any, reviewer_client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    action_id = _held(propose)
    [post] = slack_bot_mode.wait_for("/api/chat.postMessage")
    assert post["headers"]["Authorization"] == "Bearer xoxb-test-token"
    assert post["json"]["channel"] == CHANNEL
    assert len(_blocks_of("actions", post["json"])) == 1
    row = Notification.objects.get(action_id=action_id, channel="slack")
    assert (row.slack_channel, row.slack_ts) == (CHANNEL, TS)

    with django_capture_on_commit_callbacks(execute=True):
        decided = reviewer_client.post(
            f"/api/v1/actions/{action_id}/decision", {"verdict": "reject", "reason": "no"}, format="json"
        )

    assert decided.status_code == 200
    [update] = slack_bot_mode.wait_for("/api/chat.update")
    assert update["json"]["channel"] == CHANNEL
    assert update["json"]["ts"] == TS
    assert _blocks_of("actions", update["json"]) == []
    assert update["json"]["text"].startswith("Rejected by @lead")


def test_bot_mode_shows_escalation_and_expiry(
    slack_bot_mode: SlackReceiver, propose: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from approvals.gate.policies import policies_import
    from approvals.review.services import action_escalate, action_expire
    from tests.notifications.conftest import wire_type

    policies_import(
        document={"version": 1, "action_types": [wire_type(review_sla_minutes=30, expire_after_minutes=60)]},
        actor="test",
    )
    action_id = _held(propose)
    later = timezone.now() + timedelta(days=2)

    with django_capture_on_commit_callbacks(execute=True):
        assert action_escalate(action_id=action_id, now=later)
    with django_capture_on_commit_callbacks(execute=True):
        assert action_expire(action_id=action_id, now=later)

    escalated, expired = slack_bot_mode.wait_for("/api/chat.update", 2)
    assert "Escalated: past its review deadline" in escalated["json"]["text"]
    assert len(_blocks_of("actions", escalated["json"])) == 1  # still held: the buttons stay
    assert expired["json"]["text"].startswith("Expired: nobody decided it in time")
    assert _blocks_of("actions", expired["json"]) == []


def test_webhook_mode_cannot_edit_a_message_nobody_clicked(
    slack_webhook_mode: SlackReceiver, propose: Any, reviewer_client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    action_id = _held(propose)

    with django_capture_on_commit_callbacks(execute=True):
        reviewer_client.post(f"/api/v1/actions/{action_id}/decision", {"verdict": "approve"}, format="json")

    assert ProposedAction.objects.get(pk=action_id).status == "approved"
    assert len(slack_webhook_mode.requests) == 1  # the post: an incoming webhook's message cannot be edited
    assert slack_message_update(action_id=action_id) == "no way to update"
