"""Deadlines (review_sla_minutes, expire_after_minutes): escalation and expiry, once each."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from approvals.errors import ActionConflict
from approvals.gate.policies import policies_import
from approvals.gate.services import action_evaluate, action_propose, request_fingerprint
from approvals.models import ActionType, Agent, AuditEvent, ProposedAction, Status, WebhookDelivery
from approvals.review.selectors import review_queue
from approvals.review.services import action_decide, action_escalate, action_expire, actions_enforce_deadlines
from tests.conftest import LOOKED_UP, ROOT, TEST_POLICY, stop, subprocess_database_url
from tests.factories import AgentFactory, ReviewerFactory


def held(agent: Agent, order: str = "A-9", callback_url: str = "") -> ProposedAction:
    """A refund held for review: TEST_POLICY gives it a 30-minute SLA and a 24-hour expiry."""
    params = {"order_id": order, "amount": 20}
    body = {"action_type": "refund", "params": params, "trajectory": LOOKED_UP}
    action, _ = action_propose(
        agent=agent,
        action_type=ActionType.objects.get(name="refund"),
        params=params,
        fingerprint=request_fingerprint(body),
        trajectory_raw=LOOKED_UP,
        callback_url=callback_url,
    )
    action_evaluate(action_id=str(action.id))
    action.refresh_from_db()
    assert action.status == Status.NEEDS_REVIEW
    assert action.sla_deadline is not None
    assert action.expires_at is not None
    return action


@pytest.mark.django_db
def test_an_sla_breach_escalates_once_and_goes_first_in_the_queue(policy_v1: int) -> None:
    agent = AgentFactory()
    first, late = held(agent, "A-7"), held(agent, "A-8")
    now = late.sla_deadline + timedelta(seconds=1)
    ProposedAction.objects.filter(pk=first.pk).update(sla_deadline=now + timedelta(minutes=10))

    assert actions_enforce_deadlines(now=now) == {"expired": 0, "escalated": 1}
    assert actions_enforce_deadlines(now=now) == {"expired": 0, "escalated": 0}

    late.refresh_from_db()
    assert late.escalated
    assert late.status == Status.NEEDS_REVIEW
    assert AuditEvent.objects.filter(action=late, event="escalated").count() == 1
    assert list(review_queue(ReviewerFactory()).values_list("pk", flat=True)[:1]) == [late.pk]


@pytest.mark.django_db
def test_an_expiry_expires_once_never_as_a_rejection(policy_v1: int, agent_client: Any, agent: Agent) -> None:
    action = held(agent)
    now = action.expires_at + timedelta(seconds=1)
    result = actions_enforce_deadlines(now=now)
    assert result["expired"] == 1
    assert actions_enforce_deadlines(now=now)["expired"] == 0

    action.refresh_from_db()
    assert action.status == Status.EXPIRED
    assert AuditEvent.objects.filter(action=action, event="expired").count() == 1
    shown = agent_client.get(f"/api/v1/actions/{action.id}").json()
    assert shown["status"] == "expired"
    assert shown["decision"] is None

    with pytest.raises(ActionConflict):
        action_decide(action_id=str(action.id), user=ReviewerFactory(), verdict="approve")


@pytest.mark.django_db
def test_a_decision_before_the_deadline_wins_over_the_expiry(policy_v1: int) -> None:
    action = held(AgentFactory())
    action_decide(action_id=str(action.id), user=ReviewerFactory(), verdict="approve")
    assert action_expire(action_id=str(action.id), now=action.expires_at + timedelta(seconds=1)) is False
    assert action_escalate(action_id=str(action.id), now=action.expires_at) is False
    action.refresh_from_db()
    assert action.status == Status.APPROVED
    assert not AuditEvent.objects.filter(action=action, event__in=["expired", "escalated"]).exists()


@pytest.mark.django_db
def test_nothing_happens_before_the_deadlines(policy_v1: int) -> None:
    action = held(AgentFactory())
    assert actions_enforce_deadlines(now=action.sla_deadline - timedelta(seconds=1)) == {
        "expired": 0,
        "escalated": 0,
    }


@pytest.mark.django_db
def test_escalation_and_expiry_notify_the_webhook(policy_v1: int) -> None:
    action = held(AgentFactory(), callback_url="http://localhost:9/hooks")
    actions_enforce_deadlines(now=action.sla_deadline + timedelta(seconds=1))
    actions_enforce_deadlines(now=action.expires_at + timedelta(seconds=1))
    events = list(WebhookDelivery.objects.filter(action=action).order_by("pk").values_list("event", flat=True))
    assert events == ["action.evaluated", "action.escalated", "action.expired"]


# --- with celery beat and a worker ----------------------------------------------------------------------


@pytest.fixture
def beat(celery_worker_process: str, tmp_path: Any) -> Iterator[None]:
    log = tmp_path / "beat.log"
    env = {**os.environ, "DATABASE_URL": subprocess_database_url(), "GATE_DEADLINE_INTERVAL_SECONDS": "1"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "escalation_app",
                "beat",
                "-l",
                "INFO",
                "--schedule",
                str(tmp_path / "beat-schedule"),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield
    finally:
        stop(process)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_beat_escalates_and_expires_once_each(beat: None) -> None:
    policies_import(document=TEST_POLICY, actor="test")
    agent = AgentFactory()
    breached, expiring = held(agent, "A-7"), held(agent, "A-8")
    past = timezone.now() - timedelta(seconds=1)
    ProposedAction.objects.filter(pk=breached.pk).update(sla_deadline=past)
    ProposedAction.objects.filter(pk=expiring.pk).update(expires_at=past)

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        breached.refresh_from_db()
        expiring.refresh_from_db()
        if breached.escalated and expiring.status == Status.EXPIRED:
            break
        time.sleep(0.2)
    assert breached.escalated
    assert expiring.status == Status.EXPIRED
    time.sleep(2.5)  # beat runs again: nothing happens twice
    assert AuditEvent.objects.filter(action=breached, event="escalated").count() == 1
    assert AuditEvent.objects.filter(action=expiring, event="expired").count() == 1
