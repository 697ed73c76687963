"""Celery entry points of the desk (names kept from before the split: see gate/tasks.py)."""

from __future__ import annotations

from celery import shared_task

from approvals.review import services


@shared_task(name="approvals.tasks.enforce_deadlines", acks_late=True)
def enforce_deadlines() -> dict[str, int]:
    """Beat: escalate held actions past their review SLA and expire those past expire_after."""
    return services.actions_enforce_deadlines()
