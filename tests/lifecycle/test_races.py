"""Concurrent requests against the real PostgreSQL: real threads, real commits, real row locks.

Each thread uses its own connection and closes it at its end. Celery runs eagerly here (the autouse
fixture in conftest), and on-commit callbacks run for real because these tests are transactional.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from approvals.gate.services import action_evaluate
from approvals.models import ActionType, AuditEvent, Decision, ProposedAction, Status
from approvals.review.services import action_expire
from tests.conftest import LOOKED_UP
from tests.factories import AgentFactory, ProposedActionFactory, ReviewerFactory

pytestmark = pytest.mark.django_db(transaction=True)

REFUND = {"action_type": "refund", "params": {"order_id": "A-1", "amount": 20}, "trajectory": LOOKED_UP}
ROUNDS = 5


def run_together(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls in threads released at the same moment; their results in call order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def worker(index: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = call()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    assert not errors, errors
    return results


def agent_client(agent: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {agent.token}")
    return client


def reviewer_client(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def post(client: APIClient, url: str, body: Any = None) -> tuple[int, Any]:
    response = client.post(url, body, format="json")
    return response.status_code, response.json()


@pytest.fixture
def agent(db: None) -> Any:
    return AgentFactory(name="racer")


def held_action(agent: Any) -> ProposedAction:
    return ProposedActionFactory(
        agent=agent, action_type=ActionType.objects.get(name="refund"), status=Status.NEEDS_REVIEW
    )


def test_two_reviewers_decide_at_once(policy_v1, agent):
    first, second = reviewer_client(ReviewerFactory(username="ann")), reviewer_client(ReviewerFactory(username="bob"))
    for _ in range(ROUNDS):
        # given
        action = held_action(agent)
        url = f"/api/v1/actions/{action.id}/decision"

        # when
        results = run_together(
            lambda url=url: post(first, url, {"verdict": "approve"}),
            lambda url=url: post(second, url, {"verdict": "reject"}),
        )

        # then exactly one wins, and the action shows the winner's verdict
        codes = sorted(code for code, _ in results)
        assert codes == [200, 409], results
        [winner] = [(index, body) for index, (code, body) in enumerate(results) if code == 200]
        action.refresh_from_db()
        assert action.status == ("approved" if winner[0] == 0 else "rejected")
        assert winner[1]["status"] == action.status
        decision = Decision.objects.get(action=action)
        assert decision.reviewer.username == ("ann" if winner[0] == 0 else "bob")
        assert AuditEvent.objects.filter(action=action, event="decided").count() == 1


def test_decision_races_a_cancel(policy_v1, agent):
    reviewer = reviewer_client(ReviewerFactory())
    owner = agent_client(agent)
    outcomes: Counter[str] = Counter()
    for _ in range(ROUNDS):
        # given
        action = held_action(agent)

        # when
        decided, cancelled = run_together(
            lambda action=action: post(reviewer, f"/api/v1/actions/{action.id}/decision", {"verdict": "approve"}),
            lambda action=action: post(owner, f"/api/v1/actions/{action.id}/cancel"),
        )

        # then exactly one of them changed the action
        assert sorted([decided[0], cancelled[0]]) == [200, 409], (decided, cancelled)
        action.refresh_from_db()
        events = list(AuditEvent.objects.filter(action=action).values_list("event", flat=True))
        if decided[0] == 200:
            assert action.status == Status.APPROVED
            assert Decision.objects.filter(action=action).count() == 1
            assert events == ["decided"]
            outcomes["decided"] += 1
        else:
            assert action.status == Status.CANCELLED
            assert not Decision.objects.filter(action=action).exists()
            assert events == ["cancelled"]
            outcomes["cancelled"] += 1
    assert sum(outcomes.values()) == ROUNDS


def test_concurrent_identical_proposals_make_one_action(policy_v1, agent):
    # given 50 clients sending the same body with the same key
    body = {**REFUND, "idempotency_key": "run-1/step-1"}
    clients = [agent_client(agent) for _ in range(50)]

    # when
    results = run_together(*(lambda client=client: post(client, "/api/v1/actions", body) for client in clients))

    # then
    codes = Counter(code for code, _ in results)
    assert codes == {201: 1, 200: 49}, results
    assert len({response["id"] for _, response in results}) == 1
    action = ProposedAction.objects.get()
    assert str(action.id) == results[0][1]["id"]
    assert AuditEvent.objects.filter(action=action, event="proposed").count() == 1
    # its evaluation ran once, on commit
    assert action.status == Status.AUTO_APPROVED
    assert action.evaluation_attempts == 1
    assert Decision.objects.filter(action=action).count() == 1


def test_concurrent_proposals_with_one_key_and_two_bodies(policy_v1, agent):
    # given ten requests with one key: five with one body, five with another
    other = {**REFUND, "params": {"order_id": "A-1", "amount": 30}}
    bodies = [{**(REFUND if i % 2 else other), "idempotency_key": "k"} for i in range(10)]
    clients = [agent_client(agent) for _ in bodies]

    # when
    results = run_together(
        *(
            lambda client=client, body=body: post(client, "/api/v1/actions", body)
            for client, body in zip(clients, bodies, strict=True)
        )
    )

    # then one is created; its twins get it back, the others a conflict
    action = ProposedAction.objects.get()
    [created] = [i for i, (code, _) in enumerate(results) if code == 201]
    winner_amount = bodies[created]["params"]["amount"]
    assert action.params["amount"] == winner_amount
    for body, (code, response) in zip(bodies, results, strict=True):
        if body["params"]["amount"] == winner_amount:
            assert code in (200, 201)
            assert response["id"] == str(action.id)
        else:
            assert code == 409
            assert "detail" in response


def test_concurrent_proposals_without_a_key_are_all_created(policy_v1, agent):
    clients = [agent_client(agent) for _ in range(5)]

    results = run_together(*(lambda client=client: post(client, "/api/v1/actions", REFUND) for client in clients))

    assert [code for code, _ in results] == [201] * 5
    assert ProposedAction.objects.count() == 5
    # The same refund five times: the first decided is approved; one evaluated after it is held as a
    # repeat of an executed effect (contract §6.1); evaluated at the same moment, both may pass.
    statuses = Counter(ProposedAction.objects.values_list("status", flat=True))
    assert statuses[Status.AUTO_APPROVED] >= 1
    assert statuses[Status.AUTO_APPROVED] + statuses[Status.NEEDS_REVIEW] == 5
    for action in ProposedAction.objects.filter(status=Status.NEEDS_REVIEW):
        assert [f["rule"] for f in action.findings if f["outcome"] != "pass"] == ["repeat_of_executed"]


# --- added for issue 7 ("Races"): a decision racing an expiry, an evaluation running twice ----------


def test_decision_races_an_expiry(policy_v1, agent):
    from datetime import timedelta

    from django.utils import timezone

    pass

    reviewer = reviewer_client(ReviewerFactory())
    outcomes: Counter[str] = Counter()
    for _ in range(ROUNDS):
        # given a held action already past its expiry time
        action = held_action(agent)
        ProposedAction.objects.filter(pk=action.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

        # when a reviewer decides it while the deadline sweep expires it
        decided, expired = run_together(
            lambda action=action: post(reviewer, f"/api/v1/actions/{action.id}/decision", {"verdict": "approve"}),
            lambda action=action: action_expire(action_id=str(action.id)),
        )

        # then exactly one of them changed the action, and the audit log shows only that one
        assert (decided[0] == 200) != expired, (decided, expired)
        action.refresh_from_db()
        events = list(AuditEvent.objects.filter(action=action).values_list("event", flat=True))
        if expired:
            assert decided[0] == 409, decided
            assert action.status == Status.EXPIRED
            assert not Decision.objects.filter(action=action).exists()
            assert events == ["expired"]
            outcomes["expired"] += 1
        else:
            assert action.status == Status.APPROVED
            assert Decision.objects.filter(action=action).count() == 1
            assert events == ["decided"]
            outcomes["decided"] += 1
    assert sum(outcomes.values()) == ROUNDS


def test_an_evaluation_running_twice_at_once_decides_once(policy_v1, agent):
    from approvals import policy

    refund = ActionType.objects.get(name="refund")
    for round_number in range(ROUNDS):
        # given a pending action whose evaluation task was delivered twice (each round its own
        # session: the same refund again in one session would be held as a repeat of an executed one)
        action = ProposedActionFactory(
            agent=agent,
            action_type=refund,
            params=REFUND["params"],
            context={"session_id": f"round-{round_number}"},
            trajectory=policy.normalize_trajectory(LOOKED_UP),
        )
        assert action.status == Status.PENDING

        # when both copies run at the same moment
        run_together(
            lambda action=action: action_evaluate(action_id=str(action.id)),
            lambda action=action: action_evaluate(action_id=str(action.id)),
        )

        # then one transition won: one decision, one "evaluated" event
        action.refresh_from_db()
        assert action.status == Status.AUTO_APPROVED
        assert Decision.objects.filter(action=action).count() == 1
        assert list(AuditEvent.objects.filter(action=action).values_list("event", flat=True)) == ["evaluated"]
        assert action.evaluation_attempts in (1, 2)
