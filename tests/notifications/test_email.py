"""E-mail of held actions (contract §6.3) through a real SMTP server on loopback (aiosmtpd): sent by
the real worker end to end, once per action however often the outbox fans out, and retried while
SMTP is down without the decision ever waiting for it."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from approvals.gate.policies import policies_import
from approvals.lifecycle.outbox import outbox_dispatch
from approvals.models import Notification, OutboxEvent, ProposedAction
from approvals.ops.metrics import metrics_text
from tests.factories import AgentFactory
from tests.notifications.conftest import wire_type
from tests.notifications.slack_receiver import SlackReceiver
from tests.smtp import LoopbackSMTP

HELD = {"action_type": "wire", "params": {"account": "DE-1", "amount": 5000}}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


def _bodies(message: Any) -> tuple[str, str]:
    parts = {
        part.get_content_type(): part.get_payload(decode=True).decode()
        for part in message.walk()
        if not part.is_multipart()
    }
    return parts["text/plain"], parts["text/html"]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_worker_emails_a_held_action_to_notify_emails(
    celery_worker_process: str, smtp_server: LoopbackSMTP
) -> None:
    # given: a type that tells two addresses, and an agent
    policies_import(
        document={
            "version": 1,
            "action_types": [wire_type(notify_emails=["treasury-worker@example.com", "cfo-worker@example.com"])],
        },
        actor="test",
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AgentFactory(name='payments-bot').token}")

    # when: the worker holds a proposal
    response = client.post("/api/v1/actions?wait=10", HELD, format="json")
    assert response.status_code == 201
    action = response.json()
    assert action["status"] == "needs_review"

    # then: one e-mail, to both addresses, through the SMTP server, from the worker
    [message] = smtp_server.wait_for("treasury-worker@example.com")
    assert smtp_server.to("cfo-worker@example.com") == [message]
    assert message["Subject"].startswith("[gate] wire by payments-bot needs review (risk ")
    assert message["X-Gate-Action"] == action["id"]
    text, html = _bodies(message)
    link = f"http://127.0.0.1:8000/review/{action['id']}"  # GATE_PUBLIC_URL's default, absolute
    assert link in text
    assert f'href="{link}"' in html
    assert "under_limit (fail): wires of 1000 or more need a person" in text
    assert '"amount": 5000' in text
    assert "<code>under_limit</code>" in html
    assert Notification.objects.get(action_id=action["id"], channel="email").state == "sent"


def test_a_held_action_is_emailed_once_however_often_its_announcement_is_repeated(
    wire_policy: int, smtp_settings: LoopbackSMTP, propose: Any, django_capture_on_commit_callbacks: Any
) -> None:
    policies_import(
        document={"version": 1, "action_types": [wire_type(notify_emails=["once@example.com"])]}, actor="test"
    )
    action_id = propose(HELD).action["id"]
    [message] = smtp_settings.wait_for("once@example.com")

    # when: the outbox fans the hold out again (a sweep after a crash), twice
    held = OutboxEvent.objects.get(action_id=action_id, event="evaluated")
    with django_capture_on_commit_callbacks(execute=True):
        outbox_dispatch([held])
        outbox_dispatch([held])

    # then
    assert smtp_settings.to("once@example.com") == [message]
    assert Notification.objects.filter(action_id=action_id).count() == 1


def test_a_held_action_is_posted_to_slack_once_however_often_it_is_announced(
    wire_policy: int,
    slack_webhook_mode: SlackReceiver,
    propose: Any,
    django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    action_id = propose(HELD).action["id"]
    held = OutboxEvent.objects.get(action_id=action_id, event="evaluated")

    with django_capture_on_commit_callbacks(execute=True):
        outbox_dispatch([held])
        outbox_dispatch([held])

    assert len(slack_webhook_mode.to("/services/T0/B0/hook")) == 1


def test_a_type_nobody_is_told_of_has_no_notification(smtp_settings: LoopbackSMTP, propose: Any, db: None) -> None:
    policies_import(document={"version": 1, "action_types": [wire_type()]}, actor="test")

    action_id = propose(HELD).action["id"]

    held = OutboxEvent.objects.get(action_id=action_id, event="evaluated")
    assert "notify" not in held.payload
    assert not Notification.objects.filter(action_id=action_id).exists()


@override_settings(GATE_NOTIFY_MAX_ATTEMPTS=3)
def test_failing_notifications_are_retried_recorded_and_never_affect_the_decision(
    wire_policy: int,
    slack_webhook_mode: SlackReceiver,
    propose: Any,
    reviewer_client: Any,
    django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> None:
    # given: SMTP is down and Slack answers 500 every time (tasks retry at once in eager mode)
    settings.GATE_METRICS_CACHE_SECONDS = 0
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", _closed_port()
    slack_webhook_mode.statuses = [500] * 10

    # when
    response = propose(HELD)

    # then: the action is held as ever, and the reviewer decides it
    assert response.status_code == 201
    assert response.action["status"] == "needs_review"
    email, posted = (Notification.objects.get(action_id=response.action["id"], channel=c) for c in ("email", "slack"))
    assert (email.state, email.attempts) == ("failed", 3)
    assert "ConnectionRefusedError" in email.last_error
    assert (posted.state, posted.attempts) == ("failed", 3)
    assert "HTTP 500" in posted.last_error
    assert len(slack_webhook_mode.to("/services/T0/B0/hook")) == 3
    with django_capture_on_commit_callbacks(execute=True):
        decided = reviewer_client.post(
            f"/api/v1/actions/{response.action['id']}/decision", {"verdict": "approve"}, format="json"
        )
    assert decided.status_code == 200
    assert ProposedAction.objects.get(pk=response.action["id"]).status == "approved"
    text = metrics_text().decode()
    assert 'gate_notification_failures_total{channel="email"} 1.0' in text
    assert 'gate_notification_failures_total{channel="slack"} 1.0' in text


def test_a_slack_failure_that_passes_is_sent_on_a_later_attempt(
    wire_policy: int, slack_webhook_mode: SlackReceiver, propose: Any, settings: Any
) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    slack_webhook_mode.statuses = [503]

    action_id = propose(HELD).action["id"]

    row = Notification.objects.get(action_id=action_id, channel="slack")
    assert (row.state, row.attempts) == ("sent", 2)
    assert len(slack_webhook_mode.to("/services/T0/B0/hook")) == 2
