"""The trivial task the bare endpoint queues: update one row, tell a waiting request."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from approvals.lifecycle import events
from approvals.models import ProposedAction, Status


@shared_task(acks_late=True)
def touch_row(action_id: str) -> None:
    ProposedAction.objects.filter(pk=action_id).update(status=Status.AUTO_APPROVED, evaluated_at=timezone.now())
    client = events._redis()
    if client is not None:
        client.publish(events._channel(action_id), Status.AUTO_APPROVED)
