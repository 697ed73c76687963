"""Telling the world that an action changed: waiting API requests (Redis pub/sub) and open review
pages (the Channels layer). Called only from transaction.on_commit, so nobody is told of a state
that was rolled back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings

logger = logging.getLogger(__name__)

# The Channels groups of open review pages, so that a page hears only of actions its reviewer may
# review (contract §6.3, as approvals.review.selectors.actions_reviewable_by reads them): a type
# without a review group is pushed to every reviewer (QUEUE_GROUP), one with a group to that group's
# members (and, once escalated, to its escalation group's), and everything to the superusers.
QUEUE_GROUP = "review_queue"
SUPERUSERS_GROUP = "review_all"
PUSH_TIMEOUT_SECONDS = 2.0


def review_group_channel(group_id: int) -> str:
    """The Channels group of a Django group's members (by id: a group's name may hold characters a
    channel name may not)."""
    return f"review_group.{group_id}"


def push_groups(*, review_group_id: int | None, escalation_group_id: int | None, escalated: bool) -> list[str]:
    """Where a change of an action is pushed, from its type's review groups and whether it is
    escalated (the transition reads them in its own UPDATE: no query of its own)."""
    if review_group_id is None:
        return [QUEUE_GROUP, SUPERUSERS_GROUP]
    groups = [SUPERUSERS_GROUP, review_group_channel(review_group_id)]
    if escalated and escalation_group_id is not None and escalation_group_id != review_group_id:
        groups.append(review_group_channel(escalation_group_id))
    return groups


def listener_groups(*, superuser: bool, group_ids: list[int]) -> list[str]:
    """The Channels groups a reviewer's review page joins: each change then reaches it once, unless
    the reviewer is in both groups of an escalated action's type (the page applies a change twice
    harmlessly)."""
    if superuser:
        return [SUPERUSERS_GROUP]
    return [QUEUE_GROUP, *(review_group_channel(group_id) for group_id in sorted(group_ids))]


_client_lock = threading.Lock()
_client: redis.Redis | None = None


def _redis() -> redis.Redis | None:
    global _client
    if not settings.REDIS_URL:
        return None
    with _client_lock:
        if _client is None:
            _client = redis.Redis.from_url(
                settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=2, health_check_interval=30
            )
    return _client


async def _group_send_within(layer: Any, groups: list[str], message: dict[str, Any], timeout: float) -> None:
    async def send_all() -> None:
        for group in groups:
            await layer.group_send(group, message)

    await asyncio.wait_for(send_all(), timeout)


_loop_lock = threading.Lock()
_loop: tuple[int, asyncio.AbstractEventLoop] | None = None


def _push_loop() -> asyncio.AbstractEventLoop:
    """This process's event loop for channel-layer sends, running in a daemon thread.

    One loop for the life of the process keeps the channel layer's Redis connection open (the layer
    pools connections per loop; ``async_to_sync`` would make a loop, and a connection, per push). A
    forked child (Celery's pool, gunicorn's workers) starts its own.
    """
    global _loop
    with _loop_lock:
        if _loop is None or _loop[0] != os.getpid() or _loop[1].is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="gate-channel-push", daemon=True).start()
            _loop = (os.getpid(), loop)
        return _loop[1]


def _channel(action_id: str) -> str:
    return f"gate:action:{action_id}"


def action_changed(
    *,
    action_id: str,
    status: str,
    event: str,
    extra: dict[str, Any] | None = None,
    groups: list[str] | None = None,
) -> None:
    """Publish a change, to the review pages of ``groups`` (``push_groups``; None: an action of a
    type without a review group, as every change was before there were review groups). Failures are
    logged, never raised: the change itself is committed."""
    groups = groups if groups is not None else [QUEUE_GROUP, SUPERUSERS_GROUP]
    client = _redis()
    if client is not None:
        try:
            client.publish(_channel(action_id), status)
        except redis.RedisError:
            logger.warning("could not publish change of action %s", action_id, exc_info=True)
    layer = get_channel_layer()
    if layer is not None:
        message: dict[str, Any] = {"type": "action.changed", "event": event, "action_id": action_id, "status": status}
        if extra:
            message.update(extra)
        try:
            if settings.REDIS_URL:
                # Sent by this process's push loop while the caller goes on: a review page learns
                # of the change a moment later, an agent waiting on it (above) is not held for it,
                # and a hung Redis holds nobody (each send is bounded; one loop keeps their order).
                future = asyncio.run_coroutine_threadsafe(
                    _group_send_within(layer, groups, message, PUSH_TIMEOUT_SECONDS), _push_loop()
                )
                future.add_done_callback(lambda done: _log_push_failure(done, action_id))
            else:  # the in-memory layer lives on the caller's loop (the embedded demo, the tests)
                async_to_sync(_group_send_within)(layer, groups, message, PUSH_TIMEOUT_SECONDS)
        except Exception:
            logger.warning("could not push change of action %s to the review pages", action_id, exc_info=True)


def _log_push_failure(done: concurrent.futures.Future[None], action_id: str) -> None:
    error = None if done.cancelled() else done.exception()
    if error is not None:
        logger.warning(
            "could not push change of action %s to the review pages", action_id, exc_info=(type(error), error, None)
        )


class _ChangeListener:
    """This process's one subscription to every action's channel (PSUBSCRIBE), shared by all the
    requests waiting in it: a wait costs no Redis connection or command of its own.

    A daemon thread holds the subscription and hands each published status to the waiters of that
    action; it reconnects with a growing pause when Redis goes away. Started lazily, once per
    process (a forked child starts its own).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._waiters: dict[str, set[queue.SimpleQueue[str]]] = {}
        self._subscribed = threading.Event()
        self._tried = threading.Event()
        # A child forked while the listener held the lock would inherit it held: start afresh.
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0

    def _ensure_running(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._waiters, self._subscribed, self._tried = {}, threading.Event(), threading.Event()
            threading.Thread(target=self._run, args=(self._pid,), name="gate-change-listener", daemon=True).start()

    def register(self, action_id: str) -> queue.SimpleQueue[str] | None:
        """An inbox for the statuses published for ``action_id`` from now on; None while the
        subscription is down (the caller polls the database instead)."""
        self._ensure_running()
        self._tried.wait(timeout=1.0)  # the process's first wait gives the subscription a moment
        if not self._subscribed.is_set():
            return None
        inbox: queue.SimpleQueue[str] = queue.SimpleQueue()
        with self._lock:
            self._waiters.setdefault(action_id, set()).add(inbox)
        return inbox

    def unregister(self, action_id: str, inbox: queue.SimpleQueue[str]) -> None:
        with self._lock:
            inboxes = self._waiters.get(action_id)
            if inboxes is not None:
                inboxes.discard(inbox)
                if not inboxes:
                    del self._waiters[action_id]

    def _run(self, pid: int) -> None:
        pause = 0.1
        while self._pid == pid:
            client = _redis()
            pubsub = None
            try:
                if client is None:
                    return
                pubsub = client.pubsub()
                pubsub.psubscribe(_channel("*"))
                # Subscribed once Redis has confirmed it: a change published after that reaches us.
                confirmation = pubsub.get_message(timeout=PUSH_TIMEOUT_SECONDS)
                if confirmation is None or confirmation.get("type") != "psubscribe":
                    raise redis.RedisError("no confirmation of the subscription")
                self._subscribed.set()
                self._tried.set()
                pause = 0.1
                while self._pid == pid:
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "pmessage":
                        self._deliver(message)
            except Exception:
                logger.warning("change listener lost its Redis subscription; waits poll meanwhile", exc_info=True)
            finally:
                self._subscribed.clear()
                self._tried.set()
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()
            time.sleep(pause)
            pause = min(pause * 2, 5.0)

    def _deliver(self, message: dict[str, Any]) -> None:
        channel, data = message["channel"], message["data"]
        channel = channel.decode() if isinstance(channel, bytes) else str(channel)
        status = data.decode() if isinstance(data, bytes) else str(data)
        with self._lock:
            inboxes = list(self._waiters.get(channel.removeprefix(_channel("")), ()))
        for inbox in inboxes:
            inbox.put(status)


_listener = _ChangeListener()


def wait_for(
    action_id: str, timeout: float, status_of: Callable[[], str | None], done: Callable[[str | None], bool]
) -> None:
    """Return once ``done`` holds for the action's status, or ``timeout`` seconds have passed.

    Registers with the process's change listener, then reads the status once with ``status_of``
    (so a change committed before the registration is not missed), then takes each status
    published for the action, reading it again at least every second (a change published while
    the listener reconnected). Without Redis, or while its subscription is down, polls
    ``status_of`` with a growing interval. The caller reads the action itself once, afterwards.
    """
    deadline = time.monotonic() + timeout
    inbox = _listener.register(action_id) if settings.REDIS_URL else None
    try:
        interval = 0.005
        status = status_of()
        while not done(status):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if inbox is not None:
                try:
                    status = inbox.get(timeout=min(remaining, 1.0))
                except queue.Empty:
                    status = status_of()
            else:
                time.sleep(min(interval, remaining))
                interval = min(interval * 2, 0.25)
                status = status_of()
    finally:
        if inbox is not None:
            _listener.unregister(action_id, inbox)
