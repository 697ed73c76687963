"""Per-agent rate limits: a fixed one-minute window counted in the cache, atomically.

With ``REDIS_URL`` the cache is Redis, so every web process shares one counter per agent and
window: one pipelined round trip of ``INCR`` and ``EXPIRE NX``, both atomic, and no
read-modify-write happens in Python (DRF's own throttles read and write a list of timestamps,
which loses counts under concurrency). Embedded (no Redis), the local-memory cache counts per
process, which is all one process needs.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from redis import RedisError
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from approvals.models import Agent

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60


def agent_rate_per_minute(agent: Agent) -> int:
    """The agent's own limit when set, else the gate's default; 0 means unlimited."""
    if agent.rate_limit_per_minute is not None:
        return agent.rate_limit_per_minute
    return int(settings.GATE_AGENT_RATE_PER_MINUTE)


def agent_rate_hit(agent: Agent, *, now: float | None = None) -> tuple[bool, int]:
    """Count one request of ``agent``; returns (allowed, seconds until its window ends)."""
    limit = agent_rate_per_minute(agent)
    if limit <= 0:
        return True, 0
    now = time.time() if now is None else now
    window = int(now // WINDOW_SECONDS)
    key = f"gate:rate:agent:{agent.pk}:{window}"
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        # One round trip: INCR creates the counter at 1 and EXPIRE NX gives it a lifetime once; the
        # key outlives its window.
        redis_key = backend.make_and_validate_key(key)
        client = backend._cache.get_client(redis_key, write=True)  # type: ignore[attr-defined]
        pipe = client.pipeline(transaction=False)
        pipe.incr(redis_key)
        pipe.expire(redis_key, 2 * WINDOW_SECONDS, nx=True)
        count = int(pipe.execute()[0])
    else:
        # The key outlives its window so that it cannot expire between add and incr.
        cache.add(key, 0, timeout=2 * WINDOW_SECONDS)
        try:
            count = cache.incr(key)
        except ValueError:  # evicted in between (a full cache): count afresh rather than fail the call
            cache.add(key, 1, timeout=2 * WINDOW_SECONDS)
            count = 1
    retry_after = max(1, math.ceil((window + 1) * WINDOW_SECONDS - now))
    return count <= limit, retry_after


class AgentRateThrottle(BaseThrottle):
    """Applied to every API view (REST_FRAMEWORK's default throttle); only agents are counted."""

    def __init__(self) -> None:
        self.retry_after: int | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        agent = request.user
        if not isinstance(agent, Agent):
            return True
        try:
            allowed, retry_after = agent_rate_hit(agent)
        except RedisError:
            # A limit on load, not a safety check: with the cache down the request goes on (every
            # action is still evaluated) rather than failing the agent (tests/ops/test_faults.py).
            logger.warning("agent %s not rate-counted: the cache is unavailable", agent.pk, exc_info=True)
            return True
        if not allowed:
            self.retry_after = retry_after
        return allowed

    def wait(self) -> float | None:
        return self.retry_after
