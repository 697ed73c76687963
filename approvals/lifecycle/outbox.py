"""The transactional outbox: every transition writes an OutboxEvent in its own transaction; after the
commit ``outbox_dispatch`` fans it out, and ``outbox_sweep`` (beat) does it again for rows that a
process which died between its commit and its dispatch left behind. At least once, and each fan-out
is safe to repeat:

- Redis pub/sub, for agents waiting on ``?wait`` (they re-read the action: a second message only
  wakes them again) and the Channels layer, for open review pages (they re-render the row);
- the webhook delivery the transition recorded, queued for the worker (a delivery is sent only
  while it is pending, and a receiver can tell repeats apart by ``X-Gate-Delivery``);
- metrics, recorded only by the dispatcher that marks the row dispatched (so never twice; lost
  only if a process dies between that mark and the record).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from approvals.lifecycle import events, statements
from approvals.models import OutboxEvent
from approvals.ops import metrics

logger = logging.getLogger(__name__)


def outbox_write(*, action_id: str, event: str, status: str, payload: dict[str, Any]) -> OutboxEvent:
    """Record a change to announce; call it inside the transaction that makes the change. It is
    dispatched once that transaction commits (and by the sweep, should that never happen)."""
    row = OutboxEvent(action_id=action_id, event=event, status=status, payload=payload, created_at=timezone.now())
    statements.insert(row)
    transaction.on_commit(lambda: outbox_dispatch([row]))
    return row


def outbox_dispatch(rows: list[OutboxEvent]) -> int:
    """Fan ``rows`` out, then mark them dispatched; returns how many this call marked. Never
    raises: a row whose fan-out failed stays undispatched for the sweep."""
    done: list[OutboxEvent] = []
    for row in rows:
        try:
            _fan_out(row)
        except Exception:
            logger.warning("could not dispatch outbox event %s; the sweep retries it", row.pk, exc_info=True)
        else:
            done.append(row)
    if not done:
        return 0
    try:
        marked = _mark_dispatched([row.pk for row in done])
    except Exception:
        logger.warning("could not mark %d outbox events dispatched; the sweep repeats them", len(done), exc_info=True)
        return 0
    for row in done:
        if row.pk in marked:
            _record_metrics(row)
    return len(marked)


def _fan_out(row: OutboxEvent) -> None:
    payload = row.payload or {}
    events.action_changed(
        action_id=str(row.action_id), status=row.status, event=row.event, extra=payload.get("push") or None
    )
    delivery = payload.get("webhook_delivery")
    if delivery is not None:
        from approvals.integrations.tasks import deliver_webhook

        deliver_webhook.delay(delivery)


def _mark_dispatched(ids: list[int]) -> set[int]:
    """Mark the rows not marked yet; the ids this call marked (another dispatcher may have). One
    statement a row (a transition dispatches one row, the sweep a few at a time), written out: on
    the worker's path after every decision, where the ORM's compiling cost showed (README)."""
    now = timezone.now()
    marked = set()
    for pk in ids:
        row = statements.update_returning(
            OutboxEvent,
            {"dispatched_at": now},
            [statements.equals(OutboxEvent, "id", pk), statements.is_null(OutboxEvent, "dispatched_at")],
            ["id"],
        )
        if row is not None:
            marked.add(int(row[0]))
    return marked


def _record_metrics(row: OutboxEvent) -> None:
    recorded = (row.payload or {}).get("metrics")
    if not recorded:
        return
    try:
        if recorded.get("kind") == "evaluation":
            metrics.record_evaluation(
                action_type=recorded["action_type"],
                duration=recorded.get("duration"),
                wait=recorded.get("wait"),
                rule_errors=recorded.get("rule_errors") or [],
            )
        elif recorded.get("kind") == "review":
            metrics.record_review(
                action_type=recorded["action_type"], verdict=recorded["verdict"], waited=recorded.get("waited")
            )
    except Exception:
        logger.warning("could not record metrics of outbox event %s", row.pk, exc_info=True)


def outbox_sweep(*, older_than: timedelta | None = None, batch: int = 500) -> int:
    """Beat: dispatch what a commit left undispatched for longer than ``older_than`` (a process died
    between its commit and its dispatch, or Redis or the broker was down). Returns how many."""
    if older_than is None:
        older_than = timedelta(seconds=settings.GATE_OUTBOX_SWEEP_AFTER_SECONDS)
    cutoff = timezone.now() - older_than
    rows = list(
        OutboxEvent.objects.filter(dispatched_at__isnull=True, created_at__lt=cutoff).order_by("created_at")[:batch]
    )
    if rows:
        logger.info("outbox sweep: dispatching %d events left behind", len(rows))
    return outbox_dispatch(rows)


def outbox_prune(*, older_than: timedelta, batch: int = 10_000) -> int:
    """Delete dispatched rows older than ``older_than`` (the audit log keeps the history), at most
    ``batch`` of the oldest: a walk of the key's index, with no index of its own to keep up."""
    oldest = OutboxEvent.objects.order_by("id").values("id")[:batch]
    done = OutboxEvent.objects.filter(
        id__in=oldest, dispatched_at__isnull=False, created_at__lt=timezone.now() - older_than
    )
    deleted, _ = done.delete()
    return deleted
