"""The operations page for admins (/ops/): live counts, queue age, workers, webhook failures.

The page renders the figures once and static/approvals/ops.js refreshes them from /ops/data every
few seconds. The counts are /metrics' (approvals.ops.selectors.db_figures, cached a few seconds), plus
two windows over the last hour, each read from an index (approvals/ops/selectors.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone

from approvals.models import Status
from approvals.ops import health, metrics, selectors

REFRESH_SECONDS = 5


def staff_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Anonymous visitors are sent to log in; logged-in users who are not staff get 403."""

    def check(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_staff:
            raise PermissionDenied(
                "The operations page needs a staff account (“Staff status” in the admin); being a reviewer "
                "is not enough. Ask an administrator to mark your account as staff if you run the gate."
            )
        return view(request, *args, **kwargs)

    check.__name__, check.__doc__ = view.__name__, view.__doc__
    return login_required(check)


def _age(seconds: float | None) -> float | None:
    return round(seconds, 1) if seconds is not None else None


def ops_figures() -> dict[str, Any]:
    """Everything the page shows, as JSON-ready data."""
    figures = selectors.db_figures_cached()
    now = timezone.now()
    hour_ago = now - timedelta(hours=1)
    proposals_by_agent = selectors.proposals_by_agent_since(hour_ago)
    decisions = selectors.decisions_by_outcome_since(hour_ago)
    failures = selectors.recent_webhook_failures(5)
    data: dict[str, Any] = {
        "generated_at": now.isoformat(),
        "counted_at": figures.taken_at.isoformat(),
        "by_status": {status: figures.status_total(status) for status in Status.values},
        "last_hour": {
            "proposals": sum(proposals_by_agent.values()),
            "proposals_by_agent": proposals_by_agent,
            "decisions": sum(decisions.values()),
            "decisions_by_outcome": decisions,
        },
        "queue": {
            "depth": figures.status_total(Status.NEEDS_REVIEW),
            "escalated": figures.queue_escalated,
            "oldest_age_seconds": _age((now - figures.queue_oldest).total_seconds() if figures.queue_oldest else None),
        },
        "pending": {
            "count": figures.status_total(Status.PENDING),
            "oldest_age_seconds": _age(
                (now - figures.pending_oldest).total_seconds() if figures.pending_oldest else None
            ),
        },
        "webhooks": {
            "failed": figures.webhooks_failed,
            "pending": figures.webhooks_pending,
            "recent_failures": [
                {
                    "id": delivery.pk,
                    "action_id": str(delivery.action_id),
                    "event": delivery.event,
                    "host": urlsplit(delivery.url).hostname or "",
                    "attempts": delivery.attempts,
                    "error": delivery.last_error[:200],
                    "created_at": delivery.created_at.isoformat(),
                }
                for delivery in failures
            ],
        },
    }
    try:
        data["workers"] = [
            {"hostname": w.hostname, "age_seconds": w.age, "alive": w.fresh} for w in health.worker_heartbeats()
        ]
        data["celery_queues"] = metrics.celery_queue_lengths()
        data["redis"] = {"ok": True, "embedded": not settings.REDIS_URL}
    except redis.RedisError as exc:
        data["workers"], data["celery_queues"] = [], {}
        data["redis"] = {"ok": False, "error": str(exc)[:200], "embedded": False}
    return data


@staff_required
def ops_page(request: HttpRequest) -> HttpResponse:
    return render(request, "approvals/ops.html", {"ops": ops_figures(), "refresh_ms": REFRESH_SECONDS * 1000})


@staff_required
def ops_data(request: HttpRequest) -> JsonResponse:
    response = JsonResponse(ops_figures())
    response["Cache-Control"] = "no-store"
    return response
