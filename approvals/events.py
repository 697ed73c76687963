"""Telling the world that an action changed: waiting API requests (Redis pub/sub) and open review
pages (the Channels layer). Called only from transaction.on_commit, so nobody is told of a state
that was rolled back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings

logger = logging.getLogger(__name__)

QUEUE_GROUP = "review_queue"
PUSH_TIMEOUT_SECONDS = 2.0
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


async def _group_send_within(layer: Any, message: dict[str, Any], timeout: float) -> None:
    await asyncio.wait_for(layer.group_send(QUEUE_GROUP, message), timeout)


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


def action_changed(*, action_id: str, status: str, event: str, extra: dict[str, Any] | None = None) -> None:
    """Publish a change. Failures are logged, never raised: the change itself is committed."""
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
                    _group_send_within(layer, message, PUSH_TIMEOUT_SECONDS), _push_loop()
                )
                future.add_done_callback(lambda done: _log_push_failure(done, action_id))
            else:  # the in-memory layer lives on the caller's loop (the embedded demo, the tests)
                async_to_sync(_group_send_within)(layer, message, PUSH_TIMEOUT_SECONDS)
        except Exception:
            logger.warning("could not push change of action %s to the review pages", action_id, exc_info=True)


def _log_push_failure(done: concurrent.futures.Future[None], action_id: str) -> None:
    error = None if done.cancelled() else done.exception()
    if error is not None:
        logger.warning(
            "could not push change of action %s to the review pages", action_id, exc_info=(type(error), error, None)
        )


def wait_for(
    action_id: str, timeout: float, status_of: Callable[[], str | None], done: Callable[[str | None], bool]
) -> None:
    """Return once ``done`` holds for the action's status, or ``timeout`` seconds have passed.

    With Redis: subscribes to the action's channel, reads the status once with ``status_of`` (so a
    change published before the subscription took effect is not missed), then takes each status
    published on the channel, reading it again at least every second. Embedded: polls ``status_of``
    with a growing interval. The caller reads the action itself once, afterwards.
    """
    deadline = time.monotonic() + timeout
    client = _redis()
    if client is not None:
        try:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(_channel(action_id))
        except redis.RedisError:
            logger.warning("waiting on action %s without Redis", action_id, exc_info=True)
        else:
            try:
                status = status_of()
                while not done(status):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return
                    message = pubsub.get_message(timeout=min(remaining, 1.0))
                    if message is None:
                        status = status_of()
                    elif message.get("type") == "message":
                        data = message["data"]
                        status = data.decode() if isinstance(data, bytes) else str(data)
                return
            except redis.RedisError:
                logger.warning("lost Redis while waiting on action %s", action_id, exc_info=True)
            finally:
                pubsub.close()
    interval = 0.005
    while True:
        remaining = deadline - time.monotonic()
        if done(status_of()) or remaining <= 0:
            return
        time.sleep(min(interval, remaining))
        interval = min(interval * 2, 0.25)
