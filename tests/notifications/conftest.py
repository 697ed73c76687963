"""Fixtures of the notification tests: a type that tells people of its held actions, Slack's side on
loopback (tests/notifications/slack_receiver.py), e-mail through the real SMTP server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from approvals.gate.policies import policies_import
from tests.notifications.slack_receiver import CHANNEL, SlackReceiver
from tests.smtp import LoopbackSMTP

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
WIRE_SCHEMA = {
    "type": "object",
    "required": ["account", "amount"],
    "properties": {"account": {"type": "string"}, "amount": {"type": "number", "minimum": 0}},
}


def wire_type(name: str = "wire", **extra: Any) -> dict[str, Any]:
    """An action type whose large amounts are held: the ``amount`` threshold and the rule
    ``under_limit`` both fail for 5000."""
    return {
        "name": name,
        "params_schema": WIRE_SCHEMA,
        "base_risk": 0.2,
        "amount_path": "amount",
        "max_auto_amount": 100,
        "builtin_checks": False,
        "rules": [
            {
                "name": "under_limit",
                "require": "params.amount < 1000",
                "on_fail": "review",
                "risk": 0.3,
                "message": "wires of 1000 or more need a person",
            }
        ],
        **extra,
    }


@pytest.fixture
def slack() -> Iterator[SlackReceiver]:
    receiver = SlackReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def smtp_settings(smtp_server: LoopbackSMTP) -> Iterator[LoopbackSMTP]:
    """This process sends e-mail to the loopback SMTP server (pytest-django's default is locmem)."""
    with override_settings(
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST=smtp_server.host,
        EMAIL_PORT=smtp_server.port,
    ):
        yield smtp_server


@pytest.fixture
def slack_webhook_mode(slack: SlackReceiver) -> Iterator[SlackReceiver]:
    with override_settings(
        GATE_SLACK_WEBHOOK_URL=slack.url("/services/T0/B0/hook"),
        GATE_SLACK_SIGNING_SECRET=SIGNING_SECRET,
        GATE_WEBHOOK_ALLOW_PRIVATE=True,  # the receiver is on loopback
        GATE_PUBLIC_URL="https://gate.example.com",
    ):
        yield slack


@pytest.fixture
def slack_bot_mode(slack: SlackReceiver) -> Iterator[SlackReceiver]:
    with override_settings(
        GATE_SLACK_BOT_TOKEN="xoxb-test-token",
        GATE_SLACK_CHANNEL=CHANNEL,
        GATE_SLACK_API_URL=slack.url("/api"),
        GATE_SLACK_SIGNING_SECRET=SIGNING_SECRET,
        GATE_WEBHOOK_ALLOW_PRIVATE=True,
        GATE_PUBLIC_URL="https://gate.example.com",
    ):
        yield slack


@pytest.fixture
def wire_policy(db: None) -> int:
    return policies_import(
        document={"version": 1, "action_types": [wire_type(notify_emails=["treasury@example.com"])]}, actor="test"
    )
