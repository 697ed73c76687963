"""The app as operators run it, over real HTTP on loopback: the embedded demo (`make run`'s
commands) and the full stack (an ASGI server, PostgreSQL, Redis and a Celery worker)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from rest_framework.authtoken.models import Token

from approvals.gate.policies import policies_import
from tests.conftest import LOOKED_UP, TEST_POLICY, free_port, stop, wait_until_serving
from tests.factories import AgentFactory, ReviewerFactory

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.server
def test_embedded_demo_serves_the_api_and_decides_in_process(tmp_path: Path) -> None:
    """No DATABASE_URL, no REDIS_URL: SQLite, tasks in-process on commit, in-memory channels."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["GATE_SQLITE_PATH"] = str(tmp_path / "demo.sqlite3")
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=180)
    seeded = subprocess.run(
        [*manage, "seed_demo"], cwd=ROOT, env=env, check=True, capture_output=True, text=True, timeout=120
    )
    token = next(line.split(": ")[1] for line in seeded.stdout.splitlines() if line.startswith("token: "))

    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [*manage, "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, server, log)
        headers = {"Authorization": f"Bearer {token}"}
        created = httpx.post(
            f"{base}/api/v1/actions",
            json={
                "action_type": "refund",
                "params": {"order_id": "A-1001", "amount": 10},
                "trajectory": [
                    {"kind": "message", "role": "user", "content": "refund please"},
                    {
                        "kind": "tool_call",
                        "tool": "get_order",
                        "args": {"order_id": "A-1001"},
                        "result": '{"total": 120}',
                    },
                ],
            },
            headers=headers,
            timeout=10,
        )
        assert created.status_code == 201, created.text
        assert created.json()["status"] == "auto_approved"
        assert httpx.get(f"{base}/review/", timeout=5).status_code == 302
        assert httpx.get(f"{base}/static/approvals/app.css", timeout=5).status_code == 200
    finally:
        stop(server)


@pytest.mark.server
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_full_stack_over_http(asgi_server: str) -> None:
    policies_import(document=TEST_POLICY, actor="test")
    agent = {"Authorization": f"Bearer {AgentFactory().token}"}
    reviewer = {"Authorization": f"Token {Token.objects.create(user=ReviewerFactory()).key}"}

    def propose(amount: float) -> dict[str, Any]:
        response = httpx.post(
            f"{asgi_server}/api/v1/actions?wait=5",
            json={"action_type": "refund", "params": {"order_id": "A-1", "amount": amount}, "trajectory": LOOKED_UP},
            headers=agent,
            timeout=10,
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    # a small refund comes back decided within the wait
    assert propose(20)["status"] == "auto_approved"

    # a held one: an agent long-polls it while a reviewer approves it
    held = propose(500)
    assert held["status"] == "needs_review"
    polled: dict[str, Any] = {}

    def long_poll() -> None:
        started = time.monotonic()
        polled["response"] = httpx.get(f"{asgi_server}{held['url']}?wait=20", headers=agent, timeout=30)
        polled["seconds"] = time.monotonic() - started

    poller = threading.Thread(target=long_poll)
    poller.start()
    time.sleep(1)
    decided = httpx.post(
        f"{asgi_server}{held['url']}/decision",
        json={"verdict": "approve", "reason": "ok"},
        headers=reviewer,
        timeout=10,
    )
    poller.join(timeout=30)

    assert decided.status_code == 200
    assert polled["response"].json()["status"] == "approved"
    assert polled["response"].json()["decision"]["reason"] == "ok"
    assert polled["seconds"] < 10  # woken by the change, not by the end of the wait
