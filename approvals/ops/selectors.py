"""Every database read of the operations room: the counts /metrics exposes and the /ops/ page shows.

Each query is answered from an index (measured on 1,000,000 actions: bench/metrics_scrape.py,
report in bench/results/metrics_scrape.md).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db.models import Count, Min, OuterRef, Subquery
from django.utils import timezone

from approvals.models import ActionType, Agent, Notification, ProposedAction, Status, WebhookDelivery

# --- the counts /metrics and the ops page share --------------------------------------------------


@dataclass
class DbFigures:
    """Counts from the database at one moment (see :func:`db_figures` for the queries)."""

    by_type_status: dict[tuple[str, str], int]
    queue_escalated: int
    queue_oldest: datetime | None
    pending_oldest: datetime | None
    webhooks_failed: int
    webhooks_pending: int
    webhooks_pending_oldest: datetime | None
    # Notifications of held actions that failed for good, by channel (their partial index).
    notifications_failed: dict[str, int] = field(default_factory=dict)
    taken_at: datetime = field(default_factory=timezone.now)

    def status_total(self, status: str) -> int:
        return sum(n for (_, s), n in self.by_type_status.items() if s == status)


def db_figures() -> DbFigures:
    """Every count /metrics needs, each from an index (measured on 1M actions: see the report)."""
    names = dict(ActionType.objects.values_list("pk", "name"))
    # GROUP BY on the (action_type, status) index; .order_by() drops the model's default ordering,
    # which would otherwise join the GROUP BY.
    rows = (
        ProposedAction.objects.order_by()
        .values_list("action_type_id", "status")
        .annotate(n=Count("*"))
        .values_list("action_type_id", "status", "n")
    )
    queue = ProposedAction.objects.order_by().filter(status=Status.NEEDS_REVIEW)
    webhooks = WebhookDelivery.objects.order_by()
    pending_webhooks = webhooks.filter(state=WebhookDelivery.State.PENDING).aggregate(
        n=Count("*"), oldest=Min("created_at")
    )
    return DbFigures(
        by_type_status={(names.get(type_id, str(type_id)), status): n for type_id, status, n in rows},
        # The queue's partial index leads with `escalated`, and holds created_at.
        queue_escalated=queue.filter(escalated=True).count(),
        queue_oldest=queue.aggregate(oldest=Min("created_at"))["oldest"],
        pending_oldest=ProposedAction.objects.order_by()
        .filter(status=Status.PENDING)
        .aggregate(oldest=Min("created_at"))["oldest"],
        webhooks_failed=webhooks.filter(state=WebhookDelivery.State.FAILED).count(),
        webhooks_pending=pending_webhooks["n"],
        webhooks_pending_oldest=pending_webhooks["oldest"],
        notifications_failed=dict(
            Notification.objects.order_by()
            .filter(state=Notification.State.FAILED)
            .values_list("channel")
            .annotate(n=Count("*"))
            .values_list("channel", "n")
        ),
    )


_cache_lock = threading.Lock()
_cached: tuple[float, DbFigures] | None = None


def db_figures_cached() -> DbFigures:
    """:func:`db_figures`, reused for GATE_METRICS_CACHE_SECONDS by this process (several
    Prometheus servers, or the ops page's viewers, then cost one set of queries)."""
    global _cached
    ttl = settings.GATE_METRICS_CACHE_SECONDS
    with _cache_lock:
        now = time.monotonic()
        if ttl > 0 and _cached is not None and now - _cached[0] < ttl:
            return _cached[1]
        figures = db_figures()
        _cached = (now, figures)
        return figures


# --- the ops page's windows -----------------------------------------------------------------------


def proposals_by_agent_since(since: datetime) -> dict[str, int]:
    """Actions proposed since ``since``, by agent name, busiest first; agents with none left out."""
    # Per agent, each count a range of the (agent, -created_at) index: there is no index on
    # created_at alone, and a count over the whole table would grow with it.
    per_agent = (
        Agent.objects.annotate(
            n=Subquery(
                ProposedAction.objects.order_by()
                .filter(agent=OuterRef("pk"), created_at__gte=since)
                .values("agent")
                .annotate(c=Count("*"))
                .values("c")
            )
        )
        .filter(n__gt=0)
        .order_by("-n", "name")
        .values_list("name", "n")
    )
    return dict(per_agent)


def decisions_by_outcome_since(since: datetime) -> dict[str, int]:
    """Decisions (by policy or by a reviewer) made since ``since``, by outcome (the status)."""
    # The partial index on decided_at holds every decision.
    return dict(
        ProposedAction.objects.order_by()
        .filter(decided_at__gte=since)
        .values_list("status")
        .annotate(n=Count("*"))
        .values_list("status", "n")
    )


def recent_webhook_failures(limit: int = 5) -> list[WebhookDelivery]:
    """The last ``limit`` webhook deliveries that failed for good, newest first."""
    return list(WebhookDelivery.objects.filter(state=WebhookDelivery.State.FAILED).order_by("-created_at")[:limit])
