"""Celery entry points: take ids, call a service, nothing else."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import Task, shared_task
from celery.signals import task_prerun
from django.conf import settings
from django.db import DatabaseError, connections

from approvals import services

logger = logging.getLogger(__name__)


@task_prerun.connect
def drop_broken_db_connections(**_: object) -> None:
    """The worker keeps its database connection across tasks (CELERY_DB_REUSE_MAX), so nothing else
    notices one that PostgreSQL dropped (a restart): every later task would fail on it. After an
    error, a connection that no longer answers is closed, and the next query opens a new one."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and conn.errors_occurred and not conn.is_usable():
            conn.close()


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=5,
    retry_backoff=True,
)
def evaluate_action(self: Task, action_id: str) -> None:
    """Evaluate one proposed action. Safe to run twice: the service decides once."""
    try:
        services.action_evaluate(action_id=action_id)
    except DatabaseError as exc:
        if self.request.retries >= (self.max_retries or 0):
            logger.error("giving up evaluating action %s; the sweeper will take it", action_id)
            raise
        raise self.retry(exc=exc, countdown=min(2**self.request.retries, 30)) from exc


@shared_task(acks_late=True)
def sweep_pending_actions() -> dict[str, int]:
    """Beat: re-queue actions left pending (a lost message, a broker outage) or hold them."""
    return services.action_requeue_stale(older_than=timedelta(seconds=settings.GATE_PENDING_SWEEP_AFTER_SECONDS))


@shared_task(acks_late=True)
def enforce_deadlines() -> dict[str, int]:
    """Beat: escalate held actions past their review SLA and expire those past expire_after."""
    return services.actions_enforce_deadlines()


@shared_task(bind=True, acks_late=True, max_retries=None)
def deliver_webhook(self: Task, delivery_id: int) -> str:
    """One signed POST; a failure is retried with exponential backoff until the attempts run out."""
    state = services.webhook_deliver(delivery_id=delivery_id)
    if state == "pending":
        delay = min(settings.GATE_WEBHOOK_BACKOFF_SECONDS * 2**self.request.retries, 600)
        raise self.retry(countdown=delay)
    return state
