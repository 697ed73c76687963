"""The transactional outbox on the real stack: a process killed between the commit of a change and
its announcement loses nothing. A reviewer's decision commits in a process that is SIGKILLed by its
own on-commit hook, before any push; then ``celery beat`` and a worker (the outbox sweep) announce
it: the waiting agent's Redis channel gets the new status and the agent's webhook receiver gets the
signed ``action.decided`` delivery.

Runs against a PostgreSQL and a Redis of its own (tests/fault_services.py), with uvicorn, a worker
and beat as separate processes, as in production.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from tests.fault_services import GateStack, gate_stack, wait_for
from tests.integrations.test_webhooks import Receiver

pytestmark = [pytest.mark.worker, pytest.mark.server]

POLICY: dict[str, Any] = {
    "version": 1,
    "action_types": [{"name": "escalate_ticket", "params_schema": {"type": "object"}, "mode": "review"}],
}

# Run in a process of its own: decide the action, and die (SIGKILL, no clean-up of any kind) in the
# first on-commit hook, which is the outbox's dispatch: after the commit, before any announcement.
DECIDE_AND_DIE = textwrap.dedent(
    """
    import os, signal, sys
    import django
    django.setup()
    from django.contrib.auth.models import User
    from approvals.lifecycle import outbox
    from approvals.review.services import action_decide

    outbox.outbox_dispatch = lambda rows, **_: os.kill(os.getpid(), signal.SIGKILL)
    reviewer, _ = User.objects.get_or_create(username="lead", defaults={"is_superuser": True})
    action_decide(action_id=sys.argv[1], user=reviewer, verdict="approve", reason="crash test")
    print("survived the commit: the hook did not run")
    """
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GateStack]:
    policy_file = tmp_path_factory.mktemp("outbox") / "policy.json"
    policy_file.write_text(json.dumps(POLICY))
    with gate_stack(policy_file, GATE_SWEEP_INTERVAL_SECONDS="1", GATE_OUTBOX_SWEEP_AFTER_SECONDS="1") as gate:
        yield gate


def test_a_process_killed_between_commit_and_push_loses_no_announcement(stack: GateStack) -> None:
    receiver = Receiver()
    try:
        server = stack.server()
        stack.worker()
        # given a held action with a callback, whose evaluation was announced
        proposed = httpx.post(
            f"{server.base_url}/api/v1/actions?wait=10",
            headers={"Authorization": f"Bearer {stack.token}"},
            json={"action_type": "escalate_ticket", "params": {"ticket": "T-1"}, "callback_url": receiver.url},
            timeout=20,
        ).json()
        assert proposed["status"] == "needs_review"
        assert [r["headers"]["X-Gate-Event"] for r in receiver.wait_for(1)] == ["action.evaluated"]
        channel = redis.Redis.from_url(stack.redis.url(0)).pubsub()
        channel.subscribe(f"gate:action:{proposed['id']}")
        assert channel.get_message(timeout=2)["type"] == "subscribe"

        # when the deciding process dies right after its commit
        died = subprocess.run(
            [sys.executable, "-c", DECIDE_AND_DIE, proposed["id"]],
            env=stack.env(DJANGO_SETTINGS_MODULE="escalation_app.settings"),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert died.returncode == -9, died.stdout + died.stderr
        assert stack.query("SELECT status FROM approvals_proposedaction WHERE id = %s", [proposed["id"]]) == [
            ("approved",)
        ]
        undispatched = "SELECT count(*) FROM approvals_outboxevent WHERE action_id = %s AND dispatched_at IS NULL"
        assert stack.query(undispatched, [proposed["id"]]) == [(1,)]
        assert channel.get_message(timeout=1.5) is None  # nobody announced it
        assert len(receiver.requests) == 1

        # then the outbox sweep announces it: the waiting agent's channel, and the webhook
        started = time.monotonic()
        stack.beat()
        message = None
        while message is None and time.monotonic() - started < 60:
            message = channel.get_message(timeout=1)
        assert message is not None
        assert message["data"] == b"approved"
        hooks = receiver.wait_for(2, seconds=60)
        assert [r["headers"]["X-Gate-Event"] for r in hooks] == ["action.evaluated", "action.decided"]
        assert json.loads(hooks[1]["body"])["status"] == "approved"
        wait_for(lambda: stack.query(undispatched, [proposed["id"]]) == [(0,)], timeout=30, what="dispatched")
        print(f"announced {time.monotonic() - started:.1f} s after beat started")
        channel.close()
    finally:
        receiver.close()
