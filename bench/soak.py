"""The soak (issue 7, Faults item 4): a steady rate of proposals on loopback for minutes, with a
Celery worker evaluating and reviewer threads deciding held actions over the API. At the end:

- every accepted action (a 201 answer) is final or ``needs_review`` (none left ``pending``);
- accepted = stored = audited (``proposed`` audit events), and idempotent replays created nothing;
- every reviewer decision answered 200 is one ``decided`` audit event and one Decision row;
- no 5xx answer.

    .venv/bin/python bench/soak.py [--seconds 600] [--rate 20] [--reviewers 2] [--report bench/results/soak.md]

Its own database (GATE_BENCH_SOAK_DATABASE_URL, default gate_bench_soak) and Redis index
(GATE_BENCH_SOAK_REDIS_URL, default db 7). ``run_soak`` is also called by tests/ops/test_soak.py for a
short version against the test database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.stack import Stack, ensure_database  # noqa: E402
from bench.workload import POLICY, small_body  # noqa: E402

FINAL = {"auto_approved", "approved", "rejected", "blocked", "expired", "cancelled"}


@dataclass
class SoakResult:
    seconds: float
    rate: float
    sent: int = 0
    accepted: set[str] = field(default_factory=set)  # ids answered 201
    replays: int = 0
    replay_mismatches: int = 0
    answers: Counter[str] = field(default_factory=Counter)  # HTTP status of every proposal
    server_errors: int = 0
    client_errors: int = 0
    decided_ok: int = 0
    decide_conflicts: int = 0
    reviewer_errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    stored: int = 0
    audited: int = 0
    decided_events: int = 0
    decision_rows_by_reviewers: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    settle_seconds: float = 0.0

    @property
    def problems(self) -> list[str]:
        found = []
        if self.statuses.get("pending"):
            found.append(f"{self.statuses['pending']} accepted actions still pending")
        unknown = {s: n for s, n in self.statuses.items() if s not in FINAL | {"needs_review", "pending"}}
        if unknown:
            found.append(f"unexpected statuses {unknown}")
        if not len(self.accepted) == self.stored == self.audited:
            found.append(f"accepted {len(self.accepted)}, stored {self.stored}, audited {self.audited}")
        if self.replay_mismatches:
            found.append(f"{self.replay_mismatches} idempotent replays answered another action")
        if not self.decided_ok == self.decided_events == self.decision_rows_by_reviewers:
            found.append(
                f"reviewer decisions: {self.decided_ok} answered 200, {self.decided_events} audited, "
                f"{self.decision_rows_by_reviewers} stored"
            )
        if self.server_errors:
            found.append(f"{self.server_errors} 5xx answers")
        if self.client_errors:
            found.append(f"{self.client_errors} unexpected 4xx answers or transport errors")
        if self.reviewer_errors:
            found.append(f"{self.reviewer_errors} reviewer request errors")
        if not self.accepted:
            found.append("nothing was accepted")
        return found

    def percentile(self, p: float) -> float:
        values = sorted(self.latencies_ms)
        return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))] if values else float("nan")


def _body(n: int) -> dict[str, Any]:
    """A mix: mostly auto-approvable refunds, some over the amount limit or never looked up (held)."""
    kind = n % 10
    order = f"S-{n}"
    if kind < 7:
        return small_body(amount=20 + n % 60, order_id=order)
    body = small_body(amount=500 + n, order_id=order)  # over max_auto_amount: held
    if kind == 9:  # the order was never looked up: the rule holds it
        body["trajectory"] = [step for step in body["trajectory"] if step.get("tool") != "get_order"]
        body["params"]["amount"] = 30
    return body


async def _propose(base_url: str, token: str, seconds: float, rate: float, result: SoakResult) -> None:
    sent_bodies: list[tuple[str, dict[str, Any], str]] = []
    # A bounded number in flight: httpcore's pool slows down quadratically with queued requests,
    # which would make the client, not the server, the bottleneck. Waiting for a slot counts in
    # the latency (measured from the scheduled start).
    in_flight = asyncio.Semaphore(64)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30, limits=limits) as client:

        async def one(n: int, scheduled: float) -> None:
            replay = n % 20 == 19 and sent_bodies
            if replay:
                key, body, expected = random.choice(sent_bodies)
            else:
                key, body, expected = uuid.uuid4().hex, _body(n), ""
            try:
                async with in_flight:
                    response = await client.post("/api/v1/actions", json=body, headers={"Idempotency-Key": key})
            except httpx.HTTPError as exc:
                result.answers[type(exc).__name__] += 1
                result.client_errors += 1
                return
            result.answers[str(response.status_code)] += 1
            if response.status_code >= 500:
                result.server_errors += 1
            elif replay and response.status_code == 200:
                result.replays += 1
                if response.json()["id"] != expected:
                    result.replay_mismatches += 1
            elif not replay and response.status_code == 201:
                action_id = response.json()["id"]
                result.accepted.add(action_id)
                sent_bodies.append((key, body, action_id))
                result.latencies_ms.append((time.perf_counter() - scheduled) * 1000)
            else:
                result.client_errors += 1

        start = time.perf_counter()
        tasks = []
        for n in range(int(seconds * rate)):
            scheduled = start + n / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n, scheduled)))
            result.sent += 1
        await asyncio.gather(*tasks)


def _reviewer(base_url: str, token: str, stop: threading.Event, result: SoakResult, lock: threading.Lock) -> None:
    """Take held actions from the queue (a random one of the first page) and decide them."""
    rng = random.Random()
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Token {token}"}, timeout=30) as client:
        while not stop.is_set():
            try:
                page = client.get("/api/v1/review/queue")
                if page.status_code != 200:
                    with lock:
                        result.reviewer_errors += 1
                    continue
                items = page.json()["results"]
                if not items:
                    stop.wait(0.2)
                    continue
                item = rng.choice(items)
                verdict = "approve" if rng.random() < 0.6 else "reject"
                answer = client.post(
                    f"/api/v1/actions/{item['id']}/decision", json={"verdict": verdict, "reason": "soak"}
                )
            except httpx.HTTPError:
                with lock:
                    result.reviewer_errors += 1
                continue
            with lock:
                if answer.status_code == 200:
                    result.decided_ok += 1
                elif answer.status_code == 409:  # another reviewer won the race
                    result.decide_conflicts += 1
                else:
                    result.reviewer_errors += 1
            # A person reads before deciding; leave a share of the held actions for the end.
            stop.wait(rng.uniform(0.1, 0.4))


def _reconcile(database_url: str, agent_name: str, reviewer_names: list[str], result: SoakResult) -> None:
    with psycopg.connect(database_url) as conn:
        agent_id = conn.execute("select id from approvals_agent where name = %s", (agent_name,)).fetchone()[0]  # type: ignore[index]
        ids = [uuid.UUID(x) for x in result.accepted]
        result.stored = conn.execute(
            "select count(*) from approvals_proposedaction where agent_id = %s", (agent_id,)
        ).fetchone()[0]  # type: ignore[index]
        result.audited = conn.execute(
            "select count(*) from approvals_auditevent e join approvals_proposedaction a on a.id = e.action_id"
            " where a.agent_id = %s and e.event = 'proposed'",
            (agent_id,),
        ).fetchone()[0]  # type: ignore[index]
        result.decided_events = conn.execute(
            "select count(*) from approvals_auditevent e join approvals_proposedaction a on a.id = e.action_id"
            " where a.agent_id = %s and e.event = 'decided'",
            (agent_id,),
        ).fetchone()[0]  # type: ignore[index]
        result.decision_rows_by_reviewers = conn.execute(
            "select count(*) from approvals_decision d join approvals_proposedaction a on a.id = d.action_id"
            " join auth_user u on u.id = d.reviewer_id where a.agent_id = %s and u.username = any(%s)",
            (agent_id, reviewer_names),
        ).fetchone()[0]  # type: ignore[index]
        rows = conn.execute(
            "select status, count(*) from approvals_proposedaction where id = any(%s) group by status", (ids,)
        ).fetchall()
        result.statuses = {status: count for status, count in rows}


def _pending(database_url: str, ids: set[str]) -> int:
    with psycopg.connect(database_url) as conn:
        return int(
            conn.execute(  # type: ignore[index]
                "select count(*) from approvals_proposedaction where id = any(%s) and status = 'pending'",
                ([uuid.UUID(x) for x in ids],),
            ).fetchone()[0]
        )


def run_soak(
    stack: Stack, *, seconds: float, rate: float, reviewers: int = 2, settle_timeout: float = 120
) -> SoakResult:
    """Drive ``stack`` (already started) for ``seconds`` and reconcile; see the module's docstring."""
    stack.import_policies(POLICY)
    agent_name = f"soak-{uuid.uuid4().hex[:8]}"
    token = stack.create_agent(agent_name)
    reviewer_names = [f"soak-reviewer-{uuid.uuid4().hex[:6]}" for _ in range(reviewers)]
    reviewer_tokens = [stack.create_reviewer(name) for name in reviewer_names]
    result = SoakResult(seconds=seconds, rate=rate)
    stop = threading.Event()
    lock = threading.Lock()
    threads = [
        threading.Thread(target=_reviewer, args=(stack.base_url, t, stop, result, lock), daemon=True)
        for t in reviewer_tokens
    ]
    for thread in threads:
        thread.start()
    try:
        asyncio.run(_propose(stack.base_url, token, seconds, rate, result))
        # Let the worker finish what was accepted; reviewers stop with the load.
        started = time.monotonic()
        while _pending(stack.database_url, result.accepted) and time.monotonic() - started < settle_timeout:
            time.sleep(0.2)
        result.settle_seconds = time.monotonic() - started
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    _reconcile(stack.database_url, agent_name, reviewer_names, result)
    return result


def write_report(path: Path, result: SoakResult, config: str) -> None:
    problems = result.problems
    lines = [
        "# Soak: steady load with a worker and reviewers",
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `make soak` (`bench/soak.py`). {config}",
        "",
        f"**{'Held' if not problems else 'FAILED'}**" + ("" if not problems else ": " + "; ".join(problems)),
        "",
        "| Figure | Value |",
        "|---|---:|",
        f"| duration, rate | {result.seconds:g} s at {result.rate:g} proposals/s |",
        f"| proposals sent | {result.sent} |",
        f"| accepted (201) | {len(result.accepted)} |",
        f"| stored | {result.stored} |",
        f"| audited (`proposed` events) | {result.audited} |",
        f"| idempotent replays answered 200 (same action, nothing new stored) | {result.replays} |",
        f"| answers | {', '.join(f'{k}: {v}' for k, v in sorted(result.answers.items()))} |",
        f"| 5xx answers | {result.server_errors} |",
        f"| final statuses | {', '.join(f'{k}: {v}' for k, v in sorted(result.statuses.items()))} |",
        f"| decided by reviewers (200) / audited / stored | "
        f"{result.decided_ok} / {result.decided_events} / {result.decision_rows_by_reviewers} |",
        f"| reviewer races lost (409) | {result.decide_conflicts} |",
        f"| propose latency p50 / p99 | {result.percentile(50):.1f} / {result.percentile(99):.1f} ms |",
        f"| time for the last pending actions to settle after the load | {result.settle_seconds:.1f} s |",
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--reviewers", type=int, default=2)
    parser.add_argument("--report", default=str(ROOT / "bench" / "results" / "soak.md"))
    args = parser.parse_args()
    database_url = os.environ.get("GATE_BENCH_SOAK_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/gate_bench_soak")
    redis_url = os.environ.get("GATE_BENCH_SOAK_REDIS_URL", "redis://127.0.0.1:6379/7")
    ensure_database(database_url, recreate=True)
    # One agent sends the whole load: its rate limit (default 1,200/min) is raised, not switched off.
    env = {"GATE_CONN_MAX_AGE": "60", "GATE_LOG_LEVEL": "WARNING", "GATE_AGENT_RATE_PER_MINUTE": "1000000"}
    with Stack(
        database_url, redis_url, web="gunicorn", web_workers=2, threads=4, celery_workers=2, beat=True, env=env
    ) as s:
        result = run_soak(s, seconds=args.seconds, rate=args.rate, reviewers=args.reviewers)
        logs = s.logs()
    config = (
        "Stack: gunicorn 2 workers x 4 threads (WSGI), `celery worker -c 2`, `celery beat` (sweeper, deadlines), "
        f"PostgreSQL and Redis on loopback; {args.reviewers} reviewer threads deciding over the API. "
        "Mix: 70% auto-approvable refunds, 20% over the auto-approval amount, 10% never looked up "
        "(both held), every 20th request an idempotent replay."
    )
    write_report(Path(args.report), result, config)
    print(json.dumps({"problems": result.problems, "accepted": len(result.accepted), "statuses": result.statuses}))
    if result.problems:
        print(logs[-4000:])
        raise SystemExit(1)


if __name__ == "__main__":
    main()
