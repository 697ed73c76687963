"""Celery entry points of the gate: take ids, call a service, nothing else.

Task names are given explicitly and kept from before the app was split into packages, so that
messages queued by an older release still run after an upgrade.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import Task, shared_task
from django.conf import settings
from django.db import DatabaseError

from approvals.gate import services
from approvals.ops import tracing

logger = logging.getLogger(__name__)


@shared_task(
    bind=True,
    name="approvals.tasks.evaluate_action",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=5,
    retry_backoff=True,
)
def evaluate_action(self: Task, action_id: str) -> None:
    """Evaluate one proposed action. Safe to run twice: the service decides once."""
    if tracing.ENABLED:  # its span continues the proposal's trace (the message's traceparent)
        with tracing.continued(self.request.get("traceparent")):
            return _evaluate(self, action_id)
    return _evaluate(self, action_id)


def _evaluate(task: Task, action_id: str) -> None:
    try:
        services.action_evaluate(action_id=action_id)
    except DatabaseError as exc:
        if task.request.retries >= (task.max_retries or 0):
            logger.error("giving up evaluating action %s; the sweeper will take it", action_id)
            raise
        raise task.retry(exc=exc, countdown=min(2**task.request.retries, 30)) from exc


@shared_task(name="approvals.tasks.sweep_pending_actions", acks_late=True)
def sweep_pending_actions() -> dict[str, int]:
    """Beat: re-queue actions left pending (a lost message, a broker outage) or hold them."""
    return services.action_requeue_stale(older_than=timedelta(seconds=settings.GATE_PENDING_SWEEP_AFTER_SECONDS))
