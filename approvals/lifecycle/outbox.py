"""The transactional outbox: every transition writes an OutboxEvent in its own transaction; after the
commit ``outbox_dispatch`` fans it out, and ``outbox_sweep`` (beat) does it again for rows that a
process which died between its commit and its dispatch left behind. At least once, and each fan-out
is safe to repeat:

- Redis pub/sub, for agents waiting on ``?wait`` (they re-read the action: a second message only
  wakes them again) and the Channels layer, for open review pages (they re-render the row);
- the webhook delivery the transition recorded, queued for the worker (a delivery is sent only
  while it is pending, and a receiver can tell repeats apart by ``X-Gate-Delivery``);
- notifications of held actions (e-mail, Slack) and updates of their Slack messages, queued for the
  worker (each notification is a row, sent once: approvals.notifications);
- metrics, recorded only by the dispatcher that marks the row dispatched (so never twice; lost
  only if a process dies between that mark and the record).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from approvals.lifecycle import events, statements
from approvals.models import OutboxEvent
from approvals.ops import metrics

logger = logging.getLogger(__name__)


def outbox_row(*, action_id: str, event: str, status: str, payload: dict[str, Any]) -> OutboxEvent:
    """A change to announce, to INSERT in the transaction that makes the change (a transition inserts
    it with its other rows in one statement), then ``outbox_announce``."""
    return OutboxEvent(action_id=action_id, event=event, status=status, payload=payload, created_at=timezone.now())


def outbox_announce(row: OutboxEvent) -> None:
    """Dispatch an inserted row once its transaction commits (and by the sweep, should that never
    happen)."""
    transaction.on_commit(lambda: outbox_dispatch([row], mark_later=bool(settings.REDIS_URL)))


def outbox_dispatch(rows: list[OutboxEvent], *, mark_later: bool = False) -> int:
    """Fan ``rows`` out and mark them dispatched; returns how many this call dispatched first. Never
    raises: a row whose fan-out failed stays undispatched for the sweep.

    ``mark_later`` (the dispatch on commit, in the deployed stack): the marks are written by a thread
    of this process, a batch at a time, so that the worker that decided goes on to the next action
    at once; its metrics are recorded now. Otherwise (the sweep, the embedded demo) each row is marked
    here, and only the rows this call marked have their metrics recorded, so that two sweeps never
    count one twice.
    """
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
    if mark_later:
        for row in done:
            _record_metrics(row)
        _marks.add([row.pk for row in done])
        return len(done)
    try:
        marked = _mark_dispatched([row.pk for row in done])
    except Exception:
        logger.warning("could not mark %d outbox events dispatched; the sweep repeats them", len(done), exc_info=True)
        return 0
    for row in done:
        if row.pk in marked:
            _record_metrics(row)
    return len(marked)


class _Marks:
    """This process's dispatched rows waiting for their mark, written by a daemon thread of its own
    (started lazily, once per process: a forked child starts its own) every ``DELAY`` seconds. A
    process that dies first leaves its last batch unmarked: the sweep dispatches those rows again,
    which every fan-out allows (their metrics may then count twice)."""

    DELAY = 0.05

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._ids: list[int] = []
        self._wake = threading.Event()
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock, self._pid, self._ids, self._wake = threading.Lock(), 0, [], threading.Event()

    def add(self, ids: list[int]) -> None:
        with self._lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._run, args=(self._pid,), name="gate-outbox-marks", daemon=True).start()
            self._ids.extend(ids)
        self._wake.set()

    def flush(self) -> int:
        """Write the waiting marks now, in the calling thread; how many rows it marked."""
        with self._lock:
            ids, self._ids = self._ids, []
            self._wake.clear()
        if not ids:
            return 0
        try:
            return len(_mark_dispatched(ids))
        except Exception:
            logger.warning(
                "could not mark %d outbox events dispatched; the sweep repeats them", len(ids), exc_info=True
            )
            return 0

    def _run(self, pid: int) -> None:
        while self._pid == pid:
            self._wake.wait()
            time.sleep(self.DELAY)  # a batch: the rows dispatched meanwhile wait for it
            try:
                self.flush()
            finally:
                connection.close()  # back to the pool between batches


_marks = _Marks()


def outbox_flush_marks() -> int:
    """Write this process's waiting marks now (tests, and a process about to stop)."""
    return _marks.flush()


def _fan_out(row: OutboxEvent) -> None:
    payload = row.payload or {}
    events.action_changed(
        action_id=str(row.action_id),
        status=row.status,
        event=row.event,
        extra=payload.get("push") or None,
        groups=payload.get("push_groups"),
    )
    delivery = payload.get("webhook_delivery")
    if delivery is not None:
        from approvals.integrations.tasks import deliver_webhook

        deliver_webhook.delay(delivery)
    from approvals.notifications.services import notifications_fan_out

    notifications_fan_out(action_id=str(row.action_id), event=row.event, payload=payload)


def _mark_dispatched(ids: list[int]) -> set[int]:
    """Mark the rows not marked yet, in one statement; the ids this call marked (another dispatcher
    may have marked some)."""
    if not ids:
        return set()
    rows = statements.update_returning_all(
        OutboxEvent,
        {"dispatched_at": timezone.now()},
        [statements.one_of(OutboxEvent, "id", ids), statements.is_null(OutboxEvent, "dispatched_at")],
        ["id"],
    )
    return {int(row[0]) for row in rows}


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
