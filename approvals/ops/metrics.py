"""/metrics in the Prometheus text format, right however many processes serve and evaluate.

The gate runs as several web and worker processes, so nothing is counted in process memory:

* counts come from PostgreSQL at scrape time (:func:`approvals.ops.selectors.db_figures`): a few
  aggregate queries, each answered from an index (the actions by type and status, the review
  queue's and pending actions' partial indexes, the webhook partial indexes), cached for
  ``GATE_METRICS_CACHE_SECONDS``;
* observations the database does not hold — how long an evaluation took, how long an action waited
  for it, how long a reviewer took, which rules raised errors — are added up in Redis by the process
  that makes them (:func:`observe`, :func:`count`: one MULTI of HINCRBY/HINCRBYFLOAT), and read at
  scrape time together with the Celery queue lengths and the workers' heartbeats.

Without Redis (the embedded mode: one process, tasks in-process) the same figures are kept in that
process's memory, which is then the whole gate.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from approvals.models import Status
from approvals.ops import selectors

logger = logging.getLogger(__name__)


# --- Redis (or, embedded, process memory) -------------------------------------------------------

_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()


def redis_client(url: str | None = None) -> redis.Redis:
    """One client per URL and process, with short timeouts: a metric is never worth a stall."""
    url = url or settings.REDIS_URL
    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            client = _clients[url] = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        return client


class _LocalHashes:
    """The few Redis hash operations used here, in memory, for the embedded mode."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hashes: dict[str, dict[str, float]] = {}

    def add(self, key: str, increments: dict[str, float]) -> None:
        with self._lock:
            stored = self._hashes.setdefault(key, {})
            for name, amount in increments.items():
                stored[name] = stored.get(name, 0) + amount

    def read(self, key: str) -> dict[str, float]:
        with self._lock:
            return dict(self._hashes.get(key, {}))


_local = _LocalHashes()


def _key(name: str) -> str:
    return f"{settings.GATE_OBS_REDIS_PREFIX}{name}"


def _add(*updates: tuple[str, dict[str, float]]) -> None:
    """Add to fields of hashes (name, {field: amount}), all together in one MULTI round trip, never
    raising: losing one observation is better than failing the evaluation or decision that made it."""
    if not settings.REDIS_URL:
        for name, increments in updates:
            _local.add(name, increments)
        return
    try:
        pipe = redis_client().pipeline(transaction=True)
        for name, increments in updates:
            for field_name, amount in increments.items():
                if float(amount).is_integer():
                    pipe.hincrby(_key(name), field_name, int(amount))
                else:
                    pipe.hincrbyfloat(_key(name), field_name, amount)
        pipe.execute()
    except redis.RedisError as exc:
        logger.warning("could not record metrics %s: %s", ", ".join(name for name, _ in updates), exc)


def _field(labels: tuple[str, ...], part: str) -> str:
    return json.dumps([*labels, part], separators=(",", ":"))


@dataclass(frozen=True)
class Histogram:
    name: str
    documentation: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...]  # upper bounds, ascending; +Inf is implied


EVALUATION_DURATION = Histogram(
    "gate_evaluation_duration_seconds",
    "Time a worker took to evaluate one action (load, policy, guarded update), by action type.",
    ("action_type",),
    (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
EVALUATION_WAIT = Histogram(
    "gate_evaluation_latency_seconds",
    "Time from proposal to the policy's decision (queueing included), by action type.",
    ("action_type",),
    (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
REVIEW_DURATION = Histogram(
    "gate_review_duration_seconds",
    "Time a held action waited for a reviewer's decision, by action type and verdict.",
    ("action_type", "verdict"),
    (60.0, 300.0, 900.0, 1800.0, 3600.0, 4 * 3600.0, 8 * 3600.0, 24 * 3600.0, 72 * 3600.0),
)
HISTOGRAMS = (EVALUATION_DURATION, EVALUATION_WAIT, REVIEW_DURATION)
RULE_ERRORS = "gate_rule_errors_total"


def _observation(histogram: Histogram, labels: tuple[str, ...], value: float) -> tuple[str, dict[str, float]]:
    """One observation as hash increments: its bucket's count, the sum and the count."""
    value = max(value, 0.0)
    bucket = bisect_left(histogram.buckets, value)  # the first bound >= value; len() is +Inf
    return histogram.name, {_field(labels, str(bucket)): 1, _field(labels, "sum"): value, _field(labels, "count"): 1}


def observe(histogram: Histogram, labels: tuple[str, ...], value: float) -> None:
    """Record one observation, in one MULTI."""
    if math.isfinite(value):
        _add(_observation(histogram, labels, value))


def record_evaluation(*, action_type: str, duration: float | None, wait: float | None, rule_errors: list[str]) -> None:
    """After a worker evaluated an action of ``action_type``: how long it took, how long the action
    waited since proposed, and the rules that raised errors, in one round trip."""
    updates = []
    if duration is not None and math.isfinite(duration):
        updates.append(_observation(EVALUATION_DURATION, (action_type,), duration))
    if wait is not None and math.isfinite(wait):
        updates.append(_observation(EVALUATION_WAIT, (action_type,), wait))
    errors: dict[str, float] = {}
    for rule in rule_errors:
        rule_field = _field((action_type, rule), "n")
        errors[rule_field] = errors.get(rule_field, 0) + 1
    if errors:
        updates.append((RULE_ERRORS, errors))
    _add(*updates)


def record_review(*, action_type: str, verdict: str, waited: float | None) -> None:
    """After a reviewer decided an action: how long it waited for them."""
    if waited is not None:
        observe(REVIEW_DURATION, (action_type, verdict), waited)


def _read_hashes(names: list[str]) -> dict[str, dict[str, float]]:
    if not settings.REDIS_URL:
        return {name: _local.read(name) for name in names}
    pipe = redis_client().pipeline(transaction=False)
    for name in names:
        pipe.hgetall(_key(name))
    return {
        name: {k.decode(): float(v) for k, v in raw.items()} for name, raw in zip(names, pipe.execute(), strict=True)
    }


# --- Redis figures: queues and workers ----------------------------------------------------------


def celery_queue_lengths() -> dict[str, int]:
    """Messages waiting in each broker queue (LLEN of the Redis lists Celery uses)."""
    queues = [settings.CELERY_TASK_DEFAULT_QUEUE, settings.GATE_WEBHOOK_QUEUE]
    if not settings.REDIS_URL:
        return {}
    pipe = redis_client().pipeline(transaction=False)
    for queue in queues:
        pipe.llen(queue)
    return dict(zip(queues, (int(n) for n in pipe.execute()), strict=True))


# --- the collector ------------------------------------------------------------------------------

FINAL_OUTCOMES = {
    Status.AUTO_APPROVED: "policy",
    Status.BLOCKED: "policy",
    Status.APPROVED: "reviewer",
    Status.REJECTED: "reviewer",
}


def _age(moment: datetime | None, now: datetime) -> float:
    return max((now - moment).total_seconds(), 0.0) if moment is not None else 0.0


def _histogram_families(hashes: dict[str, dict[str, float]]) -> Iterator[Metric]:
    for spec in HISTOGRAMS:
        family = HistogramMetricFamily(spec.name, spec.documentation, labels=list(spec.labels))
        series: dict[tuple[str, ...], dict[str, float]] = {}
        for raw_field, value in hashes.get(spec.name, {}).items():
            *labels, part = json.loads(raw_field)
            series.setdefault(tuple(labels), {})[part] = value
        for labels, parts in sorted(series.items()):
            cumulative, buckets = 0.0, []
            for index, bound in enumerate([*spec.buckets, math.inf]):
                cumulative += parts.get(str(index), 0)
                buckets.append((floatToGoString(bound), cumulative))
            family.add_metric(list(labels), buckets, sum_value=parts.get("sum", 0.0))
        yield family


class GateCollector(Collector):
    """Reads the database and Redis at scrape time; holds no state of its own."""

    def collect(self) -> Iterable[Metric]:
        from approvals.ops import health

        figures = selectors.db_figures_cached()
        now = timezone.now()

        proposed = CounterMetricFamily(
            "gate_actions_proposed", "Actions proposed, by action type.", labels=["action_type"]
        )
        by_status = GaugeMetricFamily(
            "gate_actions", "Actions by action type and current status.", labels=["action_type", "status"]
        )
        decisions = CounterMetricFamily(
            "gate_decisions",
            "Final decisions, by action type, outcome (the status) and who decided (policy or reviewer).",
            labels=["action_type", "outcome", "decided_by"],
        )
        expired = CounterMetricFamily(
            "gate_actions_expired", "Held actions nobody decided before they expired.", labels=["action_type"]
        )
        per_type: dict[str, int] = {}
        for (type_name, status), n in sorted(figures.by_type_status.items()):
            per_type[type_name] = per_type.get(type_name, 0) + n
            by_status.add_metric([type_name, status], n)
            if status in FINAL_OUTCOMES:
                decisions.add_metric([type_name, status, FINAL_OUTCOMES[Status(status)]], n)
            elif status == Status.EXPIRED:
                expired.add_metric([type_name], n)
        for type_name, n in sorted(per_type.items()):
            proposed.add_metric([type_name], n)
        yield from (proposed, by_status, decisions, expired)

        yield GaugeMetricFamily(
            "gate_review_queue_depth",
            "Actions waiting for a reviewer.",
            value=figures.status_total(Status.NEEDS_REVIEW),
        )
        yield GaugeMetricFamily(
            "gate_review_queue_escalated", "Waiting actions past their review SLA.", value=figures.queue_escalated
        )
        yield GaugeMetricFamily(
            "gate_review_queue_oldest_age_seconds",
            "Age of the oldest action waiting for a reviewer (since proposed); 0 when none waits.",
            value=_age(figures.queue_oldest, now),
        )
        yield GaugeMetricFamily(
            "gate_pending_actions", "Actions stored but not evaluated yet.", value=figures.status_total(Status.PENDING)
        )
        yield GaugeMetricFamily(
            "gate_pending_oldest_age_seconds",
            "Age of the oldest action waiting for evaluation; 0 when none waits.",
            value=_age(figures.pending_oldest, now),
        )
        yield CounterMetricFamily(
            "gate_webhook_failures", "Webhook deliveries that failed for good.", value=figures.webhooks_failed
        )
        yield GaugeMetricFamily(
            "gate_webhook_pending", "Webhook deliveries still being tried.", value=figures.webhooks_pending
        )
        notifications_failed = CounterMetricFamily(
            "gate_notification_failures",
            "Notifications of held actions (e-mail, Slack) that failed for good, by channel.",
            labels=["channel"],
        )
        for channel in ("email", "slack"):
            notifications_failed.add_metric([channel], figures.notifications_failed.get(channel, 0))
        yield notifications_failed
        yield GaugeMetricFamily(
            "gate_webhook_pending_oldest_age_seconds",
            "Age of the oldest webhook delivery still being tried; 0 when none.",
            value=_age(figures.webhooks_pending_oldest, now),
        )

        try:
            hashes = _read_hashes([spec.name for spec in HISTOGRAMS] + [RULE_ERRORS])
            queues = celery_queue_lengths()
            workers = health.worker_heartbeats()
        except redis.RedisError as exc:
            logger.warning("metrics: Redis unavailable: %s", exc)
            yield GaugeMetricFamily("gate_redis_up", "Whether Redis answered this scrape.", value=0)
            return
        embedded = not settings.REDIS_URL  # no broker, no worker: tasks run in this process
        if not embedded:
            yield GaugeMetricFamily("gate_redis_up", "Whether Redis answered this scrape.", value=1)
        yield from _histogram_families(hashes)
        rule_errors = CounterMetricFamily(
            "gate_rule_errors",
            "Rule evaluations that raised an error (the action was held).",
            labels=["action_type", "rule"],
        )
        for raw_field, errors in sorted(hashes.get(RULE_ERRORS, {}).items()):
            type_name, rule, _ = json.loads(raw_field)
            rule_errors.add_metric([type_name, rule], errors)
        yield rule_errors
        if embedded:
            return
        queue_length = GaugeMetricFamily(
            "gate_celery_queue_length", "Messages waiting in a broker queue.", labels=["queue"]
        )
        for queue, n in sorted(queues.items()):
            queue_length.add_metric([queue], n)
        yield queue_length
        fresh = [w for w in workers if w.fresh]
        yield GaugeMetricFamily("gate_workers", "Celery workers with a recent heartbeat.", value=len(fresh))
        heartbeat_age = GaugeMetricFamily(
            "gate_worker_heartbeat_age_seconds", "Seconds since each worker's last heartbeat.", labels=["worker"]
        )
        for worker in workers:
            heartbeat_age.add_metric([worker.hostname], worker.age)
        yield heartbeat_age


def metrics_text() -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GateCollector())
    return generate_latest(registry)


def metrics_authorized(request: HttpRequest) -> bool:
    """Open (Prometheus' usual internal network) unless GATE_METRICS_TOKEN is set; then the
    scraper sends ``Authorization: Bearer <token>``."""
    token = settings.GATE_METRICS_TOKEN
    if not token:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def metrics_view(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        response = HttpResponse("Method not allowed.\n", status=405, content_type="text/plain")
        response["Allow"] = "GET, HEAD"
        return response
    if not metrics_authorized(request):
        response = HttpResponse("A valid bearer token is required.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    started = time.perf_counter()
    body = metrics_text()
    logger.debug("metrics scraped in %.1f ms", (time.perf_counter() - started) * 1000)
    response = HttpResponse(body, content_type=CONTENT_TYPE_PLAIN_0_0_4)
    response["Cache-Control"] = "no-store"
    return response
