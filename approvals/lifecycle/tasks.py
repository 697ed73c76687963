"""Celery entry points of the lifecycle: the outbox sweep."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings

from approvals.lifecycle import outbox


@shared_task(name="approvals.lifecycle.tasks.sweep_outbox", acks_late=True)
def sweep_outbox() -> dict[str, int]:
    """Beat: announce the changes a process left unannounced (it died between its commit and its
    dispatch, or Redis or the broker was away), then forget rows announced long ago."""
    dispatched = outbox.outbox_sweep()
    pruned = outbox.outbox_prune(older_than=timedelta(hours=settings.GATE_OUTBOX_KEEP_HOURS))
    return {"dispatched": dispatched, "pruned": pruned}
