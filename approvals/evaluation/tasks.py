"""Celery entry points of the evaluation room: take ids, call the what-if replay, nothing else."""

from __future__ import annotations

import logging

from celery import Task, shared_task
from django.db import DatabaseError

from approvals.evaluation import whatif

logger = logging.getLogger(__name__)


# The wire name is the one the task had in approvals.tasks: messages an older release queued still run.
@shared_task(bind=True, max_retries=5, name="approvals.tasks.whatif_replay")
def whatif_replay(self: Task, run_id: int) -> None:
    """One slice of a what-if replay (approvals.evaluation.whatif); queues the next slice until done."""
    try:
        more = whatif.whatif_step(run_id)
    except DatabaseError as exc:
        raise self.retry(exc=exc, countdown=min(2**self.request.retries, 30)) from exc
    except Exception as exc:
        logger.exception("what-if %s failed", run_id)
        whatif.whatif_fail(run_id, f"{type(exc).__name__}: {exc}")
        return
    if more:
        whatif_replay.delay(run_id)
