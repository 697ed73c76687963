"""Observability against the real services: /metrics figures from PostgreSQL and Redis, the
probes, JSON log lines from a real worker and a real server, and the operations page."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from approvals.gate.policies import policies_import
from approvals.models import ProposedAction, Status, WebhookDelivery
from approvals.review.services import action_expire
from tests.conftest import LOOKED_UP, ROOT, TEST_POLICY, free_port, uvicorn_server
from tests.factories import AgentFactory, UserFactory

# A type whose rule cannot be evaluated (a missing key is an error in CEL): the action is held and
# the error counted.
FLAKY_POLICY: dict[str, Any] = {
    "version": 1,
    "action_types": [
        {
            "name": "flaky",
            "params_schema": {"type": "object"},
            "rules": [{"name": "needs_missing_key", "require": "params.missing == 1", "on_fail": "review"}],
        }
    ],
}


@pytest.fixture(autouse=True)
def _fresh_figures(settings: Any) -> None:
    settings.GATE_METRICS_CACHE_SECONDS = 0


def scrape(client: Client | None = None, **headers: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics, parsed by prometheus_client: {(sample name, sorted labels): value}."""
    response = (client or Client()).get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def refund(amount: float, trajectory: Any = LOOKED_UP, **extra: Any) -> dict[str, Any]:
    return {"action_type": "refund", "params": {"order_id": "A-1", "amount": amount}, "trajectory": trajectory, **extra}


# --- /metrics -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_metrics_count_what_the_services_did(
    policy_v1: int, propose: Any, reviewer_client: APIClient, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    # given: actions through the real API and services (evaluated in-process on commit)
    policies_import(document=FLAKY_POLICY, actor="test")
    settings.GATE_WEBHOOK_MAX_ATTEMPTS = 1
    before = scrape()
    auto = propose(refund(20)).action
    held = propose(refund(150)).action
    decided = propose(refund(180)).action
    blocked = propose({"action_type": "delete_account", "params": {}}).action
    # a callback nobody answers (a closed loopback port), tried once: failed deliveries
    expiring = propose(refund(300, callback_url=f"http://localhost:{free_port()}/hook")).action
    flaky = propose({"action_type": "flaky", "params": {}}).action
    assert [a["status"] for a in (auto, held, decided, blocked, expiring, flaky)] == [
        "auto_approved",
        "needs_review",
        "needs_review",
        "blocked",
        "needs_review",
        "needs_review",
    ]
    with django_capture_on_commit_callbacks(execute=True):
        response = reviewer_client.post(
            f"/api/v1/actions/{decided['id']}/decision", {"verdict": "reject"}, format="json"
        )
    assert response.status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        ProposedAction.objects.filter(pk=expiring["id"]).update(expires_at="2000-01-01T00:00:00Z")
        assert action_expire(action_id=expiring["id"])
    # its "evaluated" and "expired" deliveries
    assert WebhookDelivery.objects.filter(state=WebhookDelivery.State.FAILED).count() == 2

    # when
    samples = scrape()

    # then: counts from PostgreSQL
    assert value(samples, "gate_actions_proposed_total", action_type="refund") == 4
    assert value(samples, "gate_actions_proposed_total", action_type="delete_account") == 1
    assert (
        value(samples, "gate_decisions_total", action_type="refund", outcome="auto_approved", decided_by="policy") == 1
    )
    assert value(samples, "gate_decisions_total", action_type="refund", outcome="rejected", decided_by="reviewer") == 1
    assert (
        value(samples, "gate_decisions_total", action_type="delete_account", outcome="blocked", decided_by="policy")
        == 1
    )
    assert value(samples, "gate_actions", action_type="refund", status="needs_review") == 1
    assert value(samples, "gate_actions_expired_total", action_type="refund") == 1
    assert value(samples, "gate_review_queue_depth") == 2  # the 150 refund and the flaky one
    assert value(samples, "gate_review_queue_oldest_age_seconds") > 0
    assert value(samples, "gate_pending_actions") == 0
    assert value(samples, "gate_webhook_failures_total") == 2
    # and observations from Redis: the four refunds' evaluations, the rule error, the review time
    assert value(samples, "gate_redis_up") == 1
    delta = {
        name: value(samples, name, **labels) - value(before, name, **labels)
        for name, labels in [
            ("gate_evaluation_duration_seconds_count", {"action_type": "refund"}),
            ("gate_evaluation_duration_seconds_bucket", {"action_type": "refund", "le": "+Inf"}),
            ("gate_evaluation_latency_seconds_count", {"action_type": "flaky"}),
            ("gate_rule_errors_total", {"action_type": "flaky", "rule": "needs_missing_key"}),
            ("gate_review_duration_seconds_count", {"action_type": "refund", "verdict": "reject"}),
        ]
    }
    assert delta == {
        "gate_evaluation_duration_seconds_count": 4,
        "gate_evaluation_duration_seconds_bucket": 4,
        "gate_evaluation_latency_seconds_count": 1,
        "gate_rule_errors_total": 1,
        "gate_review_duration_seconds_count": 1,
    }
    assert value(samples, "gate_evaluation_duration_seconds_sum", action_type="refund") > 0
    # the broker queues are listed, even empty
    assert ("gate_celery_queue_length", (("queue", "gate"),)) in samples
    assert ("gate_celery_queue_length", (("queue", "gate-webhooks"),)) in samples


@pytest.mark.django_db
def test_metrics_token(settings: Any) -> None:
    settings.GATE_METRICS_TOKEN = "scrape-secret"
    client = Client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret").status_code == 200
    assert client.post("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret").status_code == 405


@pytest.mark.django_db
def test_metrics_say_when_redis_is_down(settings: Any) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    samples = scrape()
    assert value(samples, "gate_redis_up") == 0
    assert ("gate_review_queue_depth", ()) in samples  # the database's figures are still there


@pytest.mark.django_db
def test_metrics_embedded_keep_observations_in_process(settings: Any, policy_v1: int, propose: Any) -> None:
    settings.REDIS_URL = ""  # the embedded mode: one process, tasks in it
    before = scrape()
    assert propose(refund(20)).action["status"] == "auto_approved"
    after = scrape()
    name = "gate_evaluation_duration_seconds_count"
    assert value(after, name, action_type="refund") - value(before, name, action_type="refund") == 1
    assert not {key[0] for key in after} & {"gate_redis_up", "gate_workers", "gate_celery_queue_length"}


# --- probes -----------------------------------------------------------------------------------------


def test_healthz_needs_nothing_and_any_host() -> None:
    # a kubelet addresses the pod by its IP, which no ALLOWED_HOSTS lists
    response = Client().get("/healthz", HTTP_HOST="10.1.2.3:8000")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_503_when_redis_is_unreachable(settings: Any) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # a closed loopback port
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["missing"] == ["redis", "worker"]
    assert body["checks"]["database"]["ok"] is True
    assert "ConnectionError" in body["checks"]["redis"]["error"]


@pytest.mark.django_db
def test_readyz_503_without_a_worker_heartbeat(settings: Any) -> None:
    settings.GATE_OBS_REDIS_PREFIX = f"test-{uuid.uuid4().hex}:"  # where no worker ever beat
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["missing"] == ["worker"]
    assert body["checks"]["redis"]["ok"] is True
    assert body["checks"]["worker"]["error"] == "RuntimeError: no worker heartbeat in the last 30 s"


@pytest.mark.django_db
def test_readyz_details_need_the_metrics_token_when_one_is_set(settings: Any) -> None:
    settings.GATE_METRICS_TOKEN = "scrape-secret"
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    anonymous = Client().get("/readyz")
    assert anonymous.status_code == 503
    assert anonymous.json()["checks"] == {"database": {"ok": True}, "redis": {"ok": False}, "worker": {"ok": False}}
    detailed = Client().get("/readyz", HTTP_AUTHORIZATION="Bearer scrape-secret").json()
    assert "ConnectionError" in detailed["checks"]["redis"]["error"]


@pytest.mark.django_db
def test_readyz_embedded_checks_the_database_only(settings: Any) -> None:
    settings.REDIS_URL = ""
    response = Client().get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {
        "database": {"ok": True, "ms": response.json()["checks"]["database"]["ms"]},
        "worker": {"ok": True, "detail": "embedded mode: tasks run in-process"},
    }


def test_compose_probes_the_web_and_the_worker() -> None:
    services_ = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    # each container checks itself; /readyz is the whole gate's readiness (load balancers, k8s)
    assert "/healthz" in " ".join(services_["web"]["healthcheck"]["test"])
    assert services_["worker"]["healthcheck"]["test"][1:] == ["python", "-m", "approvals.ops.health", "worker"]


# --- with a real worker ------------------------------------------------------------------------------


@pytest.fixture
def worker_agent(celery_worker_process: str) -> tuple[APIClient, Any]:
    policies_import(document=TEST_POLICY, actor="test")
    agent = AgentFactory(name=f"bot-{uuid.uuid4().hex[:6]}")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {agent.token}")
    return client, agent


def _wait_for(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_worker_evaluation_is_observed_logged_and_ready(
    worker_agent: tuple[APIClient, Any], celery_worker_process: str, celery_worker_log: Path
) -> None:
    client, agent = worker_agent
    before = scrape()

    # when: the worker evaluates a proposal that came through Redis
    response = client.post("/api/v1/actions?wait=10", refund(20), format="json")
    assert response.status_code == 201
    action = response.json()
    assert action["status"] == "auto_approved"

    # then: one more observation in the histograms, recorded by the worker process
    def observed() -> dict[Any, float] | None:
        samples = scrape()
        name = "gate_evaluation_duration_seconds_count"
        return (
            samples if value(samples, name, action_type="refund") > value(before, name, action_type="refund") else None
        )

    samples = _wait_for(observed)
    assert samples, "the worker recorded no evaluation"
    for name in ("gate_evaluation_duration_seconds", "gate_evaluation_latency_seconds"):
        count = value(samples, f"{name}_count", action_type="refund") - value(
            before, f"{name}_count", action_type="refund"
        )
        inf = value(samples, f"{name}_bucket", action_type="refund", le="+Inf") - value(
            before, f"{name}_bucket", action_type="refund", le="+Inf"
        )
        assert (count, inf) == (1, 1), name
        assert value(samples, f"{name}_sum", action_type="refund") > value(before, f"{name}_sum", action_type="refund")
    assert value(samples, "gate_workers") >= 1
    assert value(samples, "gate_worker_heartbeat_age_seconds", worker=celery_worker_process) < 30

    # and the worker's JSON log lines about it name the action and the agent
    def lines_about_it() -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in celery_worker_log.read_text().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("action_id") == action["id"]]

    about = _wait_for(
        lambda: [line for line in lines_about_it() if "succeeded" in line["message"]] and lines_about_it()
    )
    assert about, celery_worker_log.read_text()[-3000:]
    # (the consumer's "received" line comes before the task loads the action: it names the action only)
    assert {line.get("agent") for line in about if not line["message"].endswith(" received")} == {agent.name}
    assert {"time", "level", "logger", "message"} <= set(about[0])
    messages = [line["message"] for line in about]
    assert "evaluated: auto_approved" in messages
    task_lines = [m for m in messages if m.startswith("Task approvals.tasks.evaluate_action[")]
    assert [m.rsplit("]", 1)[1].split()[0] for m in task_lines] == ["received", "succeeded"]

    # and the gate is ready: database, Redis and this worker's heartbeat
    ready = Client().get("/readyz")
    assert ready.status_code == 200, ready.content
    assert celery_worker_process in ready.json()["checks"]["worker"]["detail"]

    # and the worker container's healthcheck finds its heartbeat (and no other's)
    def healthcheck(hostname: str) -> int:
        return subprocess.run(
            [sys.executable, "-m", "approvals.ops.health", "worker", hostname],
            cwd=ROOT,
            capture_output=True,
            check=False,
        ).returncode

    assert healthcheck(celery_worker_process) == 0
    assert healthcheck("celery@nowhere") == 1


# --- a real server's request log ---------------------------------------------------------------------


@pytest.fixture
def json_logging_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """uvicorn on loopback logging as in production (JSON, INFO), on the test database."""
    log = tmp_path / "uvicorn.log"
    with uvicorn_server(log, env={"GATE_LOG_FORMAT": "json", "GATE_LOG_LEVEL": "INFO"}) as base:
        yield base, log


@pytest.mark.server
@pytest.mark.django_db(transaction=True)
def test_propose_request_is_logged_as_json_with_action_and_agent(json_logging_server: tuple[str, Path]) -> None:
    base, log = json_logging_server
    policies_import(document=TEST_POLICY, actor="test")
    agent = AgentFactory(name="json-bot")

    response = httpx.post(
        f"{base}/api/v1/actions", json=refund(20), headers={"Authorization": f"Bearer {agent.token}"}, timeout=10
    )
    assert response.status_code == 201, response.text
    action_id = response.json()["id"]

    def request_line() -> dict[str, Any] | None:
        for raw in log.read_text().splitlines():
            if raw.startswith("{"):
                line = json.loads(raw)
                if line.get("logger") == "approvals.requests" and line.get("path") == "/api/v1/actions":
                    return line
        return None

    line = _wait_for(request_line, timeout=5)
    assert line is not None, log.read_text()[-3000:]
    assert line["message"].startswith("POST /api/v1/actions 201 ")
    assert (line["level"], line["method"], line["status"]) == ("INFO", "POST", 201)
    assert (line["action_id"], line["agent"]) == (action_id, "json-bot")
    assert line["duration_ms"] > 0
    text = log.read_text()
    assert agent.token not in text  # no secret is ever logged
    assert "Authorization" not in text
    # every line the app wrote is one JSON object (uvicorn's master process writes before Django)
    app_lines = [raw for raw in text.splitlines() if "approvals" in raw]
    assert all(json.loads(raw) for raw in app_lines)


# --- the operations page --------------------------------------------------------------------------------


@pytest.fixture
def staff_client(db: None) -> Client:
    client = Client()
    client.force_login(UserFactory(username="ops-admin", is_staff=True))
    return client


@pytest.mark.django_db
def test_ops_page_is_for_staff_only(staff_client: Client, reviewer: Any) -> None:
    page = staff_client.get("/ops/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Operations" in html
    assert 'src="/static/approvals/ops.js"' in html
    assert 'data-ops-url="/ops/data"' in html
    assert "<script>" not in html  # the CSP forbids inline scripts

    reviewer_client = Client()
    reviewer_client.force_login(reviewer)
    assert reviewer_client.get("/ops/").status_code == 403
    assert reviewer_client.get("/ops/data").status_code == 403
    anonymous = Client().get("/ops/data")
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/accounts/login/")
    # linked from the admin
    assert 'href="/ops/"' in staff_client.get("/admin/").content.decode()


@pytest.mark.django_db
def test_ops_data_figures(staff_client: Client, policy_v1: int, propose: Any, agent: Any, settings: Any) -> None:
    # given
    settings.GATE_WEBHOOK_MAX_ATTEMPTS = 1
    for amount in (20, 30, 150):
        propose(refund(amount))
    propose({"action_type": "delete_account", "params": {}})
    propose(refund(40, callback_url=f"http://localhost:{free_port()}/hook"))  # nobody answers: a failed delivery

    # when
    data = staff_client.get("/ops/data").json()

    # then
    assert data["by_status"]["auto_approved"] == 3
    assert data["by_status"]["needs_review"] == 1
    assert data["by_status"]["blocked"] == 1
    assert data["last_hour"]["proposals"] == 5
    assert data["last_hour"]["proposals_by_agent"] == {agent.name: 5}
    assert data["last_hour"]["decisions_by_outcome"] == {"auto_approved": 3, "blocked": 1}
    assert data["queue"]["depth"] == 1
    assert data["queue"]["oldest_age_seconds"] >= 0
    assert data["pending"] == {"count": 0, "oldest_age_seconds": None}
    assert data["webhooks"]["failed"] == 1
    [failure] = data["webhooks"]["recent_failures"]
    assert failure["host"] == "localhost"
    assert failure["event"] == "action.evaluated"
    assert data["redis"] == {"ok": True, "embedded": False}
    assert set(data["celery_queues"]) == {"gate", "gate-webhooks"}
    assert isinstance(data["workers"], list)
    assert data["last_hour"]["decisions"] == 4
    assert Status.NEEDS_REVIEW in data["by_status"]
