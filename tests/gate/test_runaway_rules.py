"""A rule that could run for minutes: refused at import when its estimate says so; stopped at the
evaluation budget by the real worker when it slips through, the action held once and the worker's
processes alive. PostgreSQL, Redis, a `celery worker` process and the real CEL binding."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from approvals.gate.policies import policies_import
from approvals.models import ActionType, AuditEvent, PolicyVersion, ProposedAction
from approvals.policy import PolicyError
from escalation_app.celery import app as celery_app
from tests.factories import AgentFactory

# The issue's rule: every step compared with every step, each row a list built by map (98 s).
MAP_IN_MAP = "trajectory.map(a, trajectory.map(b, a.tool == b.tool)).exists(row, row.exists(same, same))"
# Accepted at import (a filter is expected to keep a tenth of the steps); on a trajectory of
# nothing but searches it keeps them all, copying the list it builds at every step: seconds.
SLIPS_THROUGH = "trajectory.filter(s, s.tool == 'search').size() >= 0"


def document(*rules: tuple[str, str]) -> dict[str, Any]:
    return {
        "version": 1,
        "action_types": [
            {
                "name": "refund",
                "params_schema": {"type": "object"},
                "rules": [{"name": name, "require": require} for name, require in rules],
            }
        ],
    }


def steps(count: int, tool: str = "search") -> list[dict[str, Any]]:
    return [{"kind": "tool_call", "tool": tool, "args": {"q": str(i)}, "result": "[]"} for i in range(count)]


@pytest.mark.django_db
def test_the_issues_rule_is_refused_at_import_naming_it_and_its_estimate_and_nothing_changes() -> None:
    policies_import(document=document(("fine", "true")), actor="test")
    before = PolicyVersion.objects.count()

    with pytest.raises(PolicyError) as caught:
        policies_import(document=document(("fine", "true"), ("same_tool_twice", MAP_IN_MAP)), actor="test")

    (error,) = caught.value.errors
    assert error.startswith("action_types[0] (refund).rules[1].require: rule 'same_tool_twice' is estimated to take")
    assert "on a trajectory of 1,000 steps" in error
    assert "over the evaluation budget of 500 ms (GATE_EVALUATION_BUDGET_MS)" in error
    assert PolicyVersion.objects.count() == before
    assert list(ActionType.objects.get().rules.values_list("name", flat=True)) == ["fine"]


def _pool_processes(node: str) -> set[int]:
    stats = celery_app.control.inspect(destination=[node], timeout=5).stats() or {}
    return set(stats[node]["pool"]["processes"])


def _evaluation_ms(log: Path, action_id: str) -> float:
    """How long the worker took to evaluate the action, as its log line says (JSON lines)."""
    for line in log.read_text().splitlines():
        if action_id in line and '"duration_ms"' in line:
            return float(json.loads(line)["duration_ms"])
    raise AssertionError(f"no evaluation of {action_id} in the worker's log")


def _decided(action_id: str, seconds: float) -> ProposedAction:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        action = ProposedAction.objects.get(pk=action_id)
        if action.status != "pending":
            return action
        time.sleep(0.05)
    raise AssertionError(f"action {action_id} still pending after {seconds} s")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_rule_that_slips_through_is_stopped_at_the_budget_by_the_worker_once_and_the_worker_lives(
    celery_worker_process: str, celery_worker_log: Any, settings: Any
) -> None:
    # given: the worker's pool, a policy whose second rule runs for seconds on searches alone
    policies_import(
        document=document(("searched", "trajectory.exists(s, s.tool == 'search')"), ("runaway", SLIPS_THROUGH)),
        actor="test",
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AgentFactory().token}")
    pool = _pool_processes(celery_worker_process)
    budget_ms = settings.GATE_EVALUATION_BUDGET_MS  # the worker's too: both read the environment

    # the worker's children are up (as they are a while after a worker starts): a long trajectory
    # where the rule is quick is answered there
    warm = [_post(client, steps(999, tool="read") + steps(1)) for _ in range(2)]
    assert [_decided(w["id"], seconds=60).status for w in warm] == ["auto_approved"] * 2

    # when: the longest trajectory the API takes, every step a search
    action = _decided(_post(client, steps(1000))["id"], seconds=60)

    # then: held, the runaway named with the budget, the rule before it answered
    assert action.status == "needs_review"
    findings = {f["rule"]: f for f in action.findings}
    assert findings["searched"]["outcome"] == "pass"
    assert findings["runaway"]["outcome"] == "error"
    assert findings["runaway"]["error"] == "time budget exceeded"
    assert "rule runaway was stopped" in findings["runaway"]["message"]
    assert f"{budget_ms} ms (GATE_EVALUATION_BUDGET_MS)" in findings["runaway"]["message"]
    # within the budget (and what the evaluation does around the rules: load 1,000 steps, store the
    # decision), not the seconds the rule would run
    assert _evaluation_ms(celery_worker_log, str(action.id)) < budget_ms + 1000
    # once: one attempt, one decision
    assert action.evaluation_attempts == 1
    events = list(AuditEvent.objects.filter(action=action).values_list("event", flat=True))
    assert events == ["proposed", "evaluated"]
    # the worker's processes are the same ones, and they decide the next proposal
    assert _pool_processes(celery_worker_process) == pool
    log = celery_worker_log.read_text()
    assert "Hard time limit" not in log
    assert "WorkerLostError" not in log
    quick = _post(client, steps(3, tool="read") + steps(1))
    assert _decided(quick["id"], seconds=30).status == "auto_approved"


def _post(client: APIClient, trajectory: list[dict[str, Any]]) -> dict[str, Any]:
    """Each proposal its own effect (the same one twice would be held as a repeat)."""
    params = {"n": ProposedAction.objects.count()}
    response = client.post(
        "/api/v1/actions", {"action_type": "refund", "params": params, "trajectory": trajectory}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()
