"""Per-agent rate limits: 429 with Retry-After and a JSON body, counted atomically in Redis across
every server process, a default from settings and a per-agent override."""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from django.core.cache import cache
from django.test import override_settings
from rest_framework.test import APIClient

from approvals.api.throttling import WINDOW_SECONDS, agent_rate_hit
from tests.conftest import uvicorn_server
from tests.factories import AgentFactory


def bearer(agent: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {agent.token}")
    return client


def fresh_window(margin: float) -> None:
    """Counting in real time: wait for the next window unless ``margin`` seconds of this one are left,
    so that a test's requests never straddle two windows (which would let twice the limit through)."""
    left = WINDOW_SECONDS - time.time() % WINDOW_SECONDS
    if left < margin:
        time.sleep(left + 0.1)


@pytest.fixture(autouse=True)
def _whole_window() -> None:
    fresh_window(8)


def missing_action() -> str:
    # Authenticated and throttled before the view looks anything up: a cheap counted request.
    return f"/api/v1/actions/{uuid.uuid4()}"


def test_over_the_limit_is_429_with_retry_after_and_a_json_body(db: None) -> None:
    # given: an agent allowed 3 requests a minute
    agent = AgentFactory(rate_limit_per_minute=3)
    client = bearer(agent)

    # when
    codes = [client.get(missing_action()).status_code for _ in range(3)]
    refused = client.get(missing_action())

    # then
    assert codes == [404, 404, 404]
    assert refused.status_code == 429
    assert refused["Content-Type"] == "application/json"
    assert 1 <= int(refused["Retry-After"]) <= WINDOW_SECONDS
    assert "throttled" in refused.json()["detail"]


def test_the_limit_is_per_agent_and_reviewers_are_not_counted(db: None, reviewer_client: APIClient) -> None:
    busy, quiet = AgentFactory(rate_limit_per_minute=1), AgentFactory(rate_limit_per_minute=1)
    bearer(busy).get(missing_action())

    assert bearer(busy).get(missing_action()).status_code == 429
    assert bearer(quiet).get(missing_action()).status_code == 404
    for _ in range(5):
        assert reviewer_client.get("/api/v1/review/queue").status_code == 200


def test_every_agent_call_counts_proposals_included(db: None, policy_v1: int) -> None:
    agent = AgentFactory(rate_limit_per_minute=2)
    client = bearer(agent)
    body = {"action_type": "refund", "params": {"order_id": "A-1", "amount": 5}}

    assert client.post("/api/v1/actions", body, format="json").status_code == 201
    assert client.get(missing_action()).status_code == 404
    refused = client.post("/api/v1/actions", {**body, "idempotency_key": "k2"}, format="json")

    assert refused.status_code == 429
    assert agent.actions.count() == 1  # the refused proposal changed nothing


@override_settings(GATE_AGENT_RATE_PER_MINUTE=2)
def test_the_default_comes_from_settings_and_the_agent_override_wins(db: None) -> None:
    default, generous, unlimited = (
        AgentFactory(),
        AgentFactory(rate_limit_per_minute=10),
        AgentFactory(rate_limit_per_minute=0),
    )

    assert [bearer(default).get(missing_action()).status_code for _ in range(3)] == [404, 404, 429]
    assert [bearer(generous).get(missing_action()).status_code for _ in range(3)] == [404, 404, 404]
    assert all(bearer(unlimited).get(missing_action()).status_code == 404 for _ in range(20))


def test_counts_live_in_redis_and_the_window_resets(db: None) -> None:
    agent = AgentFactory(rate_limit_per_minute=2)
    now = 1_800_000_000.0  # a window boundary (a multiple of 60)

    assert [agent_rate_hit(agent, now=now + 1)[0] for _ in range(3)] == [True, True, False]
    allowed, retry_after = agent_rate_hit(agent, now=now + 45.5)
    assert (allowed, retry_after) == (False, 15)
    # the next window starts afresh
    assert agent_rate_hit(agent, now=now + WINDOW_SECONDS)[0] is True

    # the counter is a plain Redis key with an expiry, on this test run's Redis db
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    [key] = [k for k in client.keys(f"*gate:rate:agent:{agent.pk}:{int(now // WINDOW_SECONDS)}")]
    assert int(client.get(key) or 0) == 4
    assert 0 < client.ttl(key) <= 2 * WINDOW_SECONDS


def test_concurrent_requests_are_counted_exactly(db: None) -> None:
    """No lost increments: of 60 concurrent hits against a limit of 25, exactly 25 pass."""
    agent = AgentFactory(rate_limit_per_minute=25)
    now = 1_800_000_120.0
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(lambda _: agent_rate_hit(agent, now=now)[0], range(60)))
    assert results.count(True) == 25


@override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}})
def test_embedded_mode_counts_in_the_local_cache(db: None) -> None:
    agent = AgentFactory(rate_limit_per_minute=2)
    client = bearer(agent)

    assert [client.get(missing_action()).status_code for _ in range(3)] == [404, 404, 429]
    assert cache.get(f"gate:rate:agent:{agent.pk}:{int(time.time() // WINDOW_SECONDS)}") == 3


@pytest.fixture
def two_process_server(django_db_setup: None, tmp_path: Path) -> Iterator[str]:
    """uvicorn with two worker processes on the test database and this run's Redis."""
    with uvicorn_server(tmp_path / "uvicorn.log", args=("--workers", "2")) as base:
        yield base


@pytest.mark.server
@pytest.mark.django_db(transaction=True)
def test_the_limit_holds_across_server_processes(two_process_server: str) -> None:
    # given: an agent allowed 20 a minute, and a server whose two processes share nothing but Redis
    agent = AgentFactory(rate_limit_per_minute=20)
    headers = {"Authorization": f"Bearer {agent.token}"}
    fresh_window(25)  # the server started after the autouse wait, and a loaded machine is slow

    # when: 60 requests at once, on fresh connections so that both processes take some
    def call(_: int) -> httpx.Response:
        with httpx.Client(base_url=two_process_server, headers=headers, timeout=30) as client:
            return client.get(missing_action())

    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(call, range(60)))

    # then: exactly the limit got through, the rest 429 with a retry hint
    codes = Counter(r.status_code for r in responses)
    assert codes == {404: 20, 429: 40}, codes
    refused = next(r for r in responses if r.status_code == 429)
    assert 1 <= int(refused.headers["Retry-After"]) <= WINDOW_SECONDS
    assert refused.json()["detail"]
