"""Query budgets of the hot paths (bench/results/report.md, "Profiles"): a change that adds a query
to every proposal or evaluation shows up here, not only in a benchmark."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from approvals.gate.services import action_evaluate, action_propose
from approvals.models import ProposedAction, Status
from escalation_app.celery import app as celery_app
from tests.conftest import LOOKED_UP

BODY = {"action_type": "refund", "params": {"order_id": "A-1", "amount": 20}, "trajectory": LOOKED_UP}

pytestmark = pytest.mark.django_db


@pytest.fixture
def with_worker_mode() -> None:
    """As in production: evaluation is queued for a worker on commit (never run here: the test's
    transaction does not commit), so the request does only its own work."""
    celery_app.conf.update(CELERY_TASK_ALWAYS_EAGER=False)  # restored by conftest's _celery_mode


def test_propose_request_query_budget(
    policy_v1: int, agent_client: Any, with_worker_mode: None, django_assert_max_num_queries: Any
) -> None:
    agent_client.post("/api/v1/actions", BODY, format="json", HTTP_IDEMPOTENCY_KEY="warm-up")
    # Authenticate, action type, then one transaction: insert the action and the first link of its
    # new audit chain (no chain lock, no look-up: nobody else can see the chain yet); savepoint and
    # release stand for BEGIN and COMMIT here. No read-back.
    with django_assert_max_num_queries(6):
        response = agent_client.post("/api/v1/actions", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "pending"
    assert body["decision"] is None
    assert body["labels"] == []
    # The answer is the stored action, as a GET shows it.
    assert agent_client.get(body["url"]).json() == body


def test_idempotent_replay_answers_the_stored_action(policy_v1: int, agent_client: Any, with_worker_mode: None) -> None:
    first = agent_client.post("/api/v1/actions", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    replay = agent_client.post("/api/v1/actions", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    assert (first.status_code, replay.status_code) == (201, 200)
    assert replay.json() == first.json()
    assert ProposedAction.objects.filter(idempotency_key="k-2").count() == 1


def test_evaluation_query_budget(policy_v1: int, agent: Any) -> None:
    from approvals.models import ActionType

    warm, action = (
        action_propose(
            agent=agent,
            action_type=ActionType.objects.get(name="refund"),
            params={**BODY["params"], "order_id": order_id},  # two effects: not a repeat of the first
            fingerprint="f" * 64,
            trajectory_raw=BODY["trajectory"],
        )[0]
        for order_id in ("A-0", "A-1")
    )
    action_evaluate(action_id=str(warm.id))  # reads the type and compiles its policy, once per version
    with CaptureQueriesContext(connection) as ctx:
        action_evaluate(action_id=str(action.id))
    assert ProposedAction.objects.get(pk=action.pk).status == Status.AUTO_APPROVED
    # One statement counts the attempt and reads the action, its agent's name, its type's version and
    # the repeat checks (refused, and executed with equal params: gate/statements.py); then the
    # transition's one transaction: the guarded
    # update, the decision, the audit event (last link, insert: the row lock the update took
    # serialises the chain) and the outbox row; savepoint and release stand for BEGIN and COMMIT here.
    assert len(ctx.captured_queries) <= 8, "\n".join(q["sql"][:160] for q in ctx.captured_queries)


def test_waiting_detail_read_budget(
    policy_v1: int, agent_client: Any, with_worker_mode: None, django_assert_max_num_queries: Any
) -> None:
    created = agent_client.post("/api/v1/actions", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-3").json()
    ProposedAction.objects.filter(pk=created["id"]).update(status=Status.BLOCKED)
    # Authenticate, the action with a has-labels flag: no query for labels it does not have.
    with django_assert_max_num_queries(2):
        body = agent_client.get(created["url"] + "?wait=5").json()
    assert (body["status"], body["labels"]) == ("blocked", [])
