"""?wait= in one process shares one Redis subscription (events._ChangeListener): a wait costs no
connection or SUBSCRIBE of its own, misses no change, and still ends when Redis is gone."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
import redis
from django.conf import settings

from approvals.lifecycle import events


def _waiters(count: int, statuses: dict[str, str], done_at: dict[str, float], timeout: float = 10) -> list[Any]:
    def wait(action_id: str) -> None:
        events.wait_for(action_id, timeout, lambda: statuses[action_id], lambda status: status != "pending")
        done_at[action_id] = time.monotonic()

    threads = [threading.Thread(target=wait, args=(action_id,)) for action_id in list(statuses)[:count]]
    for thread in threads:
        thread.start()
    return threads


def test_concurrent_waits_share_one_subscription_and_each_gets_its_change() -> None:
    # given: 20 requests of this process waiting on 20 pending actions
    statuses = {str(uuid.uuid4()): "pending" for _ in range(20)}
    done_at: dict[str, float] = {}
    threads = _waiters(20, statuses, done_at)
    deadline = time.monotonic() + 5
    while sum(len(v) for v in events._listener._waiters.values()) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    client = redis.Redis.from_url(settings.REDIS_URL)
    # then: no wait subscribed to its action's channel; the process's one pattern subscription serves them
    assert all(count == 0 for _, count in client.pubsub_numsub(*(f"gate:action:{a}" for a in statuses)))
    assert client.pubsub_numpat() >= 1

    # when: each action changes (the database first, then the publication, as after a commit)
    published = time.monotonic()
    for action_id in statuses:
        statuses[action_id] = "auto_approved"
        events.action_changed(action_id=action_id, status="auto_approved", event="evaluated")
    for thread in threads:
        thread.join(10)

    # then: every wait ended on its publication, well before the 1-second re-read would have
    assert set(done_at) == set(statuses)
    assert max(done_at.values()) - published < 0.8
    assert events._listener._waiters == {}


def test_a_change_committed_before_the_wait_began_is_not_missed() -> None:
    action_id = str(uuid.uuid4())
    started = time.monotonic()
    events.wait_for(action_id, 5, lambda: "auto_approved", lambda status: status != "pending")
    assert time.monotonic() - started < 0.5


def test_without_redis_waits_poll_the_database_and_end(monkeypatch: pytest.MonkeyPatch) -> None:
    # given: a process whose Redis does not answer (a port nothing listens on)
    monkeypatch.setattr(settings, "REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setattr(events, "_client", None)
    listener = events._ChangeListener()
    monkeypatch.setattr(events, "_listener", listener)
    statuses = {str(uuid.uuid4()): "pending"}
    done_at: dict[str, float] = {}
    (thread,) = _waiters(1, statuses, done_at)
    time.sleep(1.5)
    changed = time.monotonic()
    statuses[next(iter(statuses))] = "needs_review"
    thread.join(5)
    # then: the change is seen by polling (at most 0.25 s apart), without any publication
    assert done_at
    assert done_at[next(iter(statuses))] - changed < 0.5
    listener._forget()  # its thread stops retrying


def test_a_wait_ends_at_its_timeout() -> None:
    started = time.monotonic()
    events.wait_for(str(uuid.uuid4()), 0.3, lambda: "pending", lambda status: status != "pending")
    assert 0.25 < time.monotonic() - started < 1.5
