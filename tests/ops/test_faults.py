"""Fault injection (issue 7, "Faults"): nothing accepted is lost, nothing decided twice.

The gate runs as it does in production, as separate processes (uvicorn, ``celery worker``,
``celery beat``), against a PostgreSQL and a Redis of this module's own (tests/fault_services.py) on
spare loopback ports, so that killing, freezing or restarting them harms nothing else. The database
is read directly with psycopg, never through the processes under test.

Each test prints its figures (run with ``-s`` to see them); the README's "Reliability: faults
survived" section quotes them.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fault_services import AppProcess, GateStack, gate_stack, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.server]

# Every evaluation of a "sweep_scan" action runs two rules that each compare every step of its
# trajectory with every other one: a legitimate, heavy policy that keeps a worker busy for seconds,
# long enough to be caught mid-evaluation. The rules fail, so the action is blocked by the policy
# (a Decision row), unless the evaluation is lost or runs twice. Their estimated cost (about 6 s on
# 1,000 steps) is over the default evaluation budget, so this stack's budget is raised to let them
# in: an operator who accepts slow rules sets GATE_EVALUATION_BUDGET_MS the same way.
EVALUATION_BUDGET_MS = "20000"
HEAVY_RULE = "size(trajectory.filter(s, trajectory.exists(t, t.content == s.content + '!'))) > 0"
POLICY: dict[str, Any] = {
    "version": 1,
    "action_types": [
        {
            "name": "refund",
            "params_schema": {
                "type": "object",
                "required": ["order_id", "amount"],
                "properties": {"order_id": {"type": "string"}, "amount": {"type": "number", "minimum": 0}},
            },
            "base_risk": 0.1,
            "auto_approve_max_risk": 0.3,
            "amount_path": "amount",
            "max_auto_amount": 100,
        },
        {
            "name": "sweep_scan",
            "params_schema": {"type": "object"},
            "base_risk": 0.1,
            "auto_approve_max_risk": 0.5,
            "rules": [
                {"name": f"no_echo_{i}", "require": HEAVY_RULE, "on_fail": "block", "message": "an echoed step"}
                for i in range(2)
            ],
        },
    ],
}
LONG_TRAJECTORY = [{"kind": "message", "role": "user", "content": f"step {i}"} for i in range(1000)]
SWEEP_AFTER, SWEEP_EVERY = 10, 5
FINAL_OR_HELD = {"auto_approved", "blocked", "needs_review"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GateStack]:
    policy_file = tmp_path_factory.mktemp("faults") / "policy.json"
    policy_file.write_text(json.dumps(POLICY))
    with gate_stack(policy_file, GATE_EVALUATION_BUDGET_MS=EVALUATION_BUDGET_MS) as gate:
        yield gate


@pytest.fixture
def processes(stack: GateStack) -> Iterator[list[AppProcess]]:
    """The app processes a test starts; all stopped at its end, whatever happened."""
    before = len(stack.processes)
    yield stack.processes
    for process in stack.processes[before:]:
        process.kill()
    del stack.processes[before:]


def refund(key: str | None = None, amount: float = 20) -> dict[str, Any]:
    """A refund of its own order (the same refund again would be held as repeat_of_executed); a
    retry with the same key sends the same body."""
    order = f"A-{key}" if key is not None else f"A-{uuid.uuid4().hex[:12]}"
    body: dict[str, Any] = {"action_type": "refund", "params": {"order_id": order, "amount": amount}}
    if key is not None:
        body["idempotency_key"] = key
    return body


def timed_post(client: httpx.Client, url: str, body: dict[str, Any]) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    response = client.post(url, json=body)
    return response, time.monotonic() - start


def pending_ids(stack: GateStack, ids: set[str]) -> set[str]:
    return {pk for pk, status in stack.statuses().items() if pk in ids and status == "pending"}


# --- 1. Redis down when agents propose ---------------------------------------------------------------


def test_redis_down_proposals_are_answered_and_evaluated_once_redis_returns(stack, processes):
    """The sweeper re-queues what Redis lost. Its defaults (re-queue after 30 s pending, sweep every
    15 s) bound the delay to about 45 s plus the reconnection; CI runs it shorter (10 s, every 5 s)."""
    server = stack.server()
    stack.worker(GATE_PENDING_SWEEP_AFTER_SECONDS=str(SWEEP_AFTER))
    stack.beat(GATE_SWEEP_INTERVAL_SECONDS=str(SWEEP_EVERY))
    headers = {"Authorization": f"Bearer {stack.token}"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client:
        response, _ = timed_post(client, "/api/v1/actions?wait=10", refund())
        assert response.status_code == 201
        assert response.json()["status"] == "auto_approved", "the stack evaluates while Redis is up"

        # given a hung Redis (SIGSTOP: connections open, nothing answers): a proposal is still
        # answered, in bounded time (the socket timeouts of the cache, broker and pub/sub)
        stack.redis.freeze()
        response, frozen_seconds = timed_post(client, "/api/v1/actions", refund())
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "pending"
        assert frozen_seconds < 10, frozen_seconds
        accepted = {response.json()["id"]}

        # and a Redis that is gone (killed, with what it had queued)
        stack.redis.kill()
        down_at = time.monotonic()
        latencies = []
        for i in range(20):
            response, seconds = timed_post(client, "/api/v1/actions", refund(amount=10 + i))
            assert response.status_code == 201, response.text
            assert response.json()["status"] == "pending"
            accepted.add(response.json()["id"])
            latencies.append(seconds)
        # a long poll falls back to reading the database, and ends on time
        response, wait_seconds = timed_post(client, "/api/v1/actions?wait=2", refund(amount=50))
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "pending"
        assert 1.9 < wait_seconds < 6, wait_seconds
        accepted.add(response.json()["id"])
        start = time.monotonic()
        polled = client.get(f"{response.json()['url']}?wait=2")
        get_wait_seconds = time.monotonic() - start
        assert polled.status_code == 200, polled.text
        assert polled.json()["status"] == "pending"
        assert 1.9 < get_wait_seconds < 6, get_wait_seconds
        assert max(latencies) < 2, latencies
        assert pending_ids(stack, accepted) == accepted, "nothing is evaluated without a broker"

        # when Redis comes back, empty: every queued evaluation was lost with it
        outage = time.monotonic() - down_at
        stack.redis.start()

        # then the sweeper re-queues them and the worker evaluates them, with no human step
        delay = wait_for(lambda: not pending_ids(stack, accepted), timeout=60, interval=0.5, what="evaluation")
        assert delay < SWEEP_AFTER + SWEEP_EVERY + 15, delay

    rows = stack.query(
        "SELECT a.id, a.status, (SELECT count(*) FROM approvals_auditevent e"
        "  WHERE e.action_id = a.id AND e.event = 'evaluated') FROM approvals_proposedaction a"
        " WHERE a.id = ANY(%s::uuid[])",
        [sorted(accepted)],
    )
    assert len(rows) == len(accepted)
    assert {status for _, status, _ in rows} == {"auto_approved"}
    assert {evaluated for _, _, evaluated in rows} == {1}, "each evaluated exactly once"
    print(
        f"\nRedis hung: proposal answered 201 in {frozen_seconds:.2f}s; Redis down {outage:.1f}s: "
        f"{len(accepted)} proposals accepted (max {max(latencies) * 1000:.0f} ms, ?wait=2 "
        f"{wait_seconds:.2f}s), all evaluated {delay:.1f}s after Redis returned "
        f"(sweeper: pending > {SWEEP_AFTER}s, every {SWEEP_EVERY}s)"
    )


# --- 2. a worker killed mid-evaluation ---------------------------------------------------------------


def _propose_slow(client: httpx.Client) -> str:
    response = client.post(
        "/api/v1/actions", json={"action_type": "sweep_scan", "params": {}, "trajectory": LONG_TRAJECTORY}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _attempts(stack: GateStack, action_id: str) -> tuple[str, int]:
    [(status, attempts)] = stack.query(
        "SELECT status, evaluation_attempts FROM approvals_proposedaction WHERE id = %s", [action_id]
    )
    return status, attempts


def _decided_once(stack: GateStack, action_id: str) -> None:
    status, attempts = _attempts(stack, action_id)
    assert status == "blocked"
    assert attempts == 2, "the killed attempt and the one that finished"
    events = [
        event
        for (event,) in stack.query(
            "SELECT event FROM approvals_auditevent WHERE action_id = %s ORDER BY id", [action_id]
        )
    ]
    assert events == ["proposed", "evaluated"], events
    [(decisions, by_policy)] = stack.query(
        "SELECT count(*), bool_and(by_policy) FROM approvals_decision WHERE action_id = %s", [action_id]
    )
    assert (decisions, by_policy) == (1, True)


def test_worker_killed_mid_evaluation_is_redelivered_and_decides_once(stack, processes):
    server = stack.server()
    # Redis gives an unacknowledged task back after this many seconds (production default: 120).
    worker = stack.worker("victim", GATE_VISIBILITY_TIMEOUT="4")
    headers = {"Authorization": f"Bearer {stack.token}"}
    figures = []
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client:
        # (a) the pool process evaluating the action is killed: the worker sees it lost and
        #     requeues the task at once (acks_late + reject_on_worker_lost)
        action_id = _propose_slow(client)
        wait_for(lambda: _attempts(stack, action_id) == ("pending", 1), timeout=30, interval=0.05, what="evaluating")
        time.sleep(0.5)  # well inside the seconds-long rules
        [child] = worker.children()
        os.kill(child, signal.SIGKILL)
        redelivered = wait_for(
            lambda: _attempts(stack, action_id)[1] == 2, timeout=60, interval=0.05, what="redelivery"
        )
        decided = redelivered + wait_for(
            lambda: _attempts(stack, action_id)[0] != "pending", timeout=60, interval=0.1, what="decision"
        )
        _decided_once(stack, action_id)
        figures.append(
            f"pool process killed: evaluated again {redelivered:.1f}s later by a new pool process, "
            f"decided once {decided:.1f}s after the kill"
        )
        assert worker.alive()

        # (b) the whole worker is killed (main process and pool): the message stays unacknowledged
        #     in Redis; a worker started later restores it once the visibility timeout has passed
        action_id = _propose_slow(client)
        wait_for(lambda: _attempts(stack, action_id) == ("pending", 1), timeout=30, interval=0.05, what="evaluating")
        time.sleep(0.5)
        worker.kill()
        killed_at = time.monotonic()
        time.sleep(0.5)
        assert _attempts(stack, action_id) == ("pending", 1), "nothing decided by the killed worker"
        time.sleep(max(0.0, 4.5 - (time.monotonic() - killed_at)))
        stack.worker("rescuer", GATE_VISIBILITY_TIMEOUT="4")
        ready = time.monotonic()
        wait_for(lambda: _attempts(stack, action_id)[1] == 2, timeout=60, interval=0.05, what="redelivery")
        redelivered = time.monotonic() - ready
        wait_for(lambda: _attempts(stack, action_id)[0] != "pending", timeout=60, interval=0.1, what="decision")
        _decided_once(stack, action_id)
        figures.append(
            f"whole worker killed: a worker started 4.5s later (visibility timeout 4s) took the task "
            f"{redelivered:.2f}s after it was ready, decided once {time.monotonic() - killed_at:.1f}s after the kill"
        )
    print("\n" + "; ".join(figures))


# --- 3. PostgreSQL restarted under load -----------------------------------------------------------------


@pytest.mark.parametrize("pool", [False, True], ids=["connection-per-request", "GATE_DB_POOL"])
def test_postgres_restart_under_load_fails_cleanly_and_recovers(stack, processes, pool):
    server = stack.server(GATE_AGENT_RATE_PER_MINUTE="0", GATE_DB_POOL="1" if pool else "0")
    worker = stack.worker(GATE_PENDING_SWEEP_AFTER_SECONDS="5")
    beat = stack.beat(GATE_SWEEP_INTERVAL_SECONDS="2")
    headers = {"Authorization": f"Bearer {stack.token}"}
    run = f"load-{uuid.uuid4().hex[:8]}"
    outcomes: list[tuple[Any, float]] = []
    accepted: dict[str, str] = {}  # idempotency key -> action id
    bad: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def agent(n: int) -> None:
        """Propose one action after another; on a 503, retry the same key (as the client does)."""
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=20) as client:
            i = 0
            while not stop.is_set():
                i += 1
                key = f"{run}-{n}-{i}"
                for _ in range(60):
                    try:
                        response, seconds = timed_post(client, "/api/v1/actions", refund(key, amount=i % 90))
                    except httpx.HTTPError as exc:
                        with lock:
                            bad.append(f"{key}: {exc!r}")
                        return
                    with lock:
                        outcomes.append((response.status_code, seconds))
                    if response.status_code in (200, 201):
                        with lock:
                            accepted[key] = response.json()["id"]
                        break
                    if response.status_code != 503:
                        with lock:
                            bad.append(f"{key}: {response.status_code} {response.text[:300]}")
                        return
                    if not response.headers.get("Retry-After") or "detail" not in response.json():
                        with lock:
                            bad.append(f"{key}: 503 without Retry-After or JSON detail")
                    time.sleep(0.2)

    threads = [threading.Thread(target=agent, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        # when PostgreSQL goes away for a few seconds (every connection cut), then comes back
        stopped_at = time.monotonic()
        stack.postgres.stop("fast")
        time.sleep(3)
        stack.postgres.start()
        outage = time.monotonic() - stopped_at
        restarted_at, seen = time.monotonic(), len(outcomes)
        # the same processes go on serving: proposals made after the restart succeed
        wait_for(lambda: any(code == 201 for code, _ in outcomes[seen:]), timeout=30, interval=0.1, what="recovery")
        recovered = time.monotonic() - restarted_at
        time.sleep(2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a request hung"
    assert not bad, bad[:5]
    codes = Counter(code for code, _ in outcomes)
    assert set(codes) <= {200, 201, 503}, codes
    slowest = max(seconds for _, seconds in outcomes)
    # Seen as 503s, or (with the pool) as requests held until a connection was free again.
    assert codes[503] > 0 or slowest > 1, "the fault was not seen: the test did not test it"
    assert slowest < 12, slowest
    assert server.alive(), "recovered without a restart"
    assert worker.alive()
    assert beat.alive()

    # then nothing is half-written: every stored action is one that was answered 201/200, with its
    # "proposed" audit event, and every one of them is evaluated (the worker recovered too)
    ids = set(accepted.values())
    assert len(ids) == len(accepted), "one action per idempotency key"
    rows = stack.query(
        "SELECT a.id::text, a.idempotency_key, (SELECT count(*) FROM approvals_auditevent e"
        "  WHERE e.action_id = a.id AND e.event = 'proposed') FROM approvals_proposedaction a"
        " WHERE a.idempotency_key LIKE %s",
        [f"{run}-%"],
    )
    assert {pk for pk, _, _ in rows} == ids
    assert {key: pk for pk, key, _ in rows} == accepted
    assert {proposed for _, _, proposed in rows} == {1}
    evaluated_in = wait_for(lambda: not pending_ids(stack, ids), timeout=60, interval=0.5, what="evaluation")
    statuses = Counter(status for pk, status in stack.statuses().items() if pk in ids)
    assert set(statuses) <= FINAL_OR_HELD, statuses
    [(evaluated_events,)] = stack.query(
        "SELECT count(*) FROM approvals_auditevent e JOIN approvals_proposedaction a ON a.id = e.action_id"
        " WHERE e.event = 'evaluated' AND a.idempotency_key LIKE %s",
        [f"{run}-%"],
    )
    assert evaluated_events == len(ids), "each evaluated exactly once"
    print(
        f"\n{'pool' if pool else 'no pool'}: PostgreSQL down {outage:.1f}s under 4 agents: {len(outcomes)} responses "
        f"({codes[201]} x 201, {codes[200]} x 200, {codes[503]} x 503 with Retry-After), slowest {slowest:.2f}s; "
        f"serving again {recovered:.1f}s after the restart; {len(ids)} actions stored = accepted = audited, "
        f"all evaluated ({dict(statuses)}) {evaluated_in:.1f}s after the load"
    )
