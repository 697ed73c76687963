"""Celery entry points of the integrations (names kept from before the split: see gate/tasks.py)."""

from __future__ import annotations

from celery import Task, shared_task
from django.conf import settings

from approvals.integrations import services


@shared_task(bind=True, name="approvals.tasks.deliver_webhook", acks_late=True, max_retries=None)
def deliver_webhook(self: Task, delivery_id: int) -> str:
    """One signed POST; a failure is retried with exponential backoff until the attempts run out."""
    state = services.webhook_deliver(delivery_id=delivery_id)
    if state == "pending":
        delay = min(settings.GATE_WEBHOOK_BACKOFF_SECONDS * 2**self.request.retries, 600)
        raise self.retry(countdown=delay)
    return state
