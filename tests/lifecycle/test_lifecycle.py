"""The lifecycle as data (approvals.lifecycle.transitions): every transition of the table from every
status, allowed or refused, with its audit link and outbox row; who may cause it; two transitions
racing; and the outbox's dispatch (once per row for metrics, repeatable for the rest)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from approvals.errors import ActionConflict
from approvals.lifecycle import outbox
from approvals.lifecycle.transitions import TRANSITIONS, Cause, TransitionRefused, transition_apply
from approvals.models import AuditEvent, OutboxEvent, ProposedAction, Status, WebhookDelivery
from tests.factories import ProposedActionFactory

# A column each keep-status transition may set in the test (what it sets in the services).
KEEP_STATUS_CHANGES: dict[str, dict[str, Any]] = {
    "escalate": {"escalated": True},
    "claim": {"claimed_until": None},
    "approve_partial": {"claimed_until": None},
    "report_outcome": {"outcome_executed": True},
    "label": {"ground_truth": "safe"},
}


def _cases() -> list[tuple[str, Status, Status | None]]:
    """(transition, from status, to status) for every transition, status and target."""
    cases = []
    for name, transition in TRANSITIONS.items():
        for status in Status:
            for target in transition.targets or (None,):
                cases.append((name, status, target))
    return cases


def _apply(name: str, action: ProposedAction, target: Status | None) -> Any:
    transition = TRANSITIONS[name]
    return transition_apply(
        name,
        action_id=str(action.pk),
        cause=next(iter(transition.causes)),
        actor="test",
        to=target if len(transition.targets) > 1 else None,
        changes=KEEP_STATUS_CHANGES.get(name, {}),
    )


def test_the_table_names_each_transition_once_with_what_it_announces() -> None:
    assert set(TRANSITIONS) == {
        "evaluate",
        "approve_remembered",
        "hold",
        "decide",
        "escalate",
        "expire",
        "cancel",
        "claim",
        "approve_partial",
        "report_outcome",
        "label",
    }
    webhooks = {t.webhook_event for t in TRANSITIONS.values()} - {""}
    assert webhooks == {"action.evaluated", "action.decided", "action.escalated", "action.expired"}
    for transition in TRANSITIONS.values():
        assert transition.sources
        assert transition.causes
        assert not set(transition.targets) & set(transition.sources), transition.name
        # nothing leaves a final status but the keep-status records (an outcome, a label)
        if set(transition.sources) & {Status.AUTO_APPROVED, Status.APPROVED, Status.BLOCKED}:
            assert transition.keeps_status, transition.name


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "status", "target"), _cases(), ids=lambda v: str(v))
def test_every_transition_from_every_status(name: str, status: Status, target: Status | None) -> None:
    transition = TRANSITIONS[name]
    action = ProposedActionFactory(status=status)
    audit_before = AuditEvent.objects.filter(action=action).count()

    if status in transition.sources:
        applied = _apply(name, action, target)
        action.refresh_from_db()
        assert action.status == (target or status)
        assert (applied.from_status, applied.to_status) == (status, target or status)
        link = AuditEvent.objects.filter(action=action).order_by("seq").last()
        assert (link.event, link.from_status, link.to_status) == (transition.audit_event, status, target or status)
        row = OutboxEvent.objects.get(action=action)
        assert (row.event, row.status, row.dispatched_at) == (transition.audit_event, target or status, None)
    else:
        with pytest.raises(TransitionRefused) as refused:
            _apply(name, action, target)
        assert isinstance(refused.value, ActionConflict)
        assert refused.value.status == status
        action.refresh_from_db()
        assert action.status == status
        assert AuditEvent.objects.filter(action=action).count() == audit_before
        assert not OutboxEvent.objects.filter(action=action).exists()


@pytest.mark.django_db
def test_a_transition_refuses_a_cause_or_target_it_does_not_declare() -> None:
    action = ProposedActionFactory(status=Status.NEEDS_REVIEW)
    with pytest.raises(ValueError, match="may not cause"):
        transition_apply("decide", action_id=str(action.pk), cause=Cause.AGENT, actor="x", to=Status.APPROVED)
    with pytest.raises(ValueError, match="moves to one of"):
        transition_apply("decide", action_id=str(action.pk), cause=Cause.REVIEWER, actor="x", to=Status.BLOCKED)
    with pytest.raises(ValueError, match="keeps the status"):
        transition_apply("escalate", action_id=str(action.pk), cause=Cause.DEADLINE, actor="x", to=Status.EXPIRED)
    action.refresh_from_db()
    assert action.status == Status.NEEDS_REVIEW
    assert not OutboxEvent.objects.filter(action=action).exists()


@pytest.mark.django_db
def test_a_failing_effect_takes_the_whole_transition_back() -> None:
    action = ProposedActionFactory(status=Status.NEEDS_REVIEW)

    def broken(applied: Any) -> None:
        raise RuntimeError("effect failed")

    with pytest.raises(RuntimeError):
        transition_apply(
            "decide", action_id=str(action.pk), cause=Cause.REVIEWER, actor="x", to=Status.APPROVED, effects=broken
        )
    action.refresh_from_db()
    assert action.status == Status.NEEDS_REVIEW
    assert not AuditEvent.objects.filter(action=action, event="decided").exists()
    assert not OutboxEvent.objects.filter(action=action).exists()


@pytest.mark.django_db
def test_an_unknown_action_does_not_exist() -> None:
    with pytest.raises(ProposedAction.DoesNotExist):
        transition_apply("cancel", action_id="00000000-0000-0000-0000-000000000000", cause=Cause.AGENT, actor="x")


def _race(action_id: str, attempts: list[tuple[str, Status | None, Cause]]) -> list[str]:
    """Apply the transitions in threads released at the same moment; what each did, or "refused"."""
    barrier = threading.Barrier(len(attempts))
    outcomes: list[str] = []

    def attempt(name: str, to: Status | None, cause: Cause) -> None:
        try:
            barrier.wait(timeout=30)
            transition_apply(name, action_id=action_id, cause=cause, actor="race", to=to)
            outcomes.append(name)
        except TransitionRefused:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt, args=args) for args in attempts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_two_transitions_racing_decide_once() -> None:
    """A reviewer's decision and the deadline's expiry, released at the same moment, five times:
    exactly one applies each time, with one audit link and one outbox row."""
    for _ in range(5):
        action = ProposedActionFactory(status=Status.NEEDS_REVIEW, expires_at=timezone.now())
        outcomes = _race(
            str(action.pk), [("decide", Status.APPROVED, Cause.REVIEWER), ("expire", None, Cause.DEADLINE)]
        )

        assert outcomes.count("refused") == 1, outcomes
        action.refresh_from_db()
        winner = next(o for o in outcomes if o != "refused")
        assert action.status == (Status.APPROVED if winner == "decide" else Status.EXPIRED)
        changes = AuditEvent.objects.filter(action=action, event__in=["decided", "expired"])
        assert changes.count() == 1
        assert OutboxEvent.objects.filter(action=action).count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_outbox_is_dispatched_on_commit_and_metrics_count_once(monkeypatch: pytest.MonkeyPatch) -> None:
    recorded: list[str] = []
    monkeypatch.setattr(outbox.metrics, "record_review", lambda **kw: recorded.append(kw["verdict"]))
    action = ProposedActionFactory(status=Status.NEEDS_REVIEW)
    client = redis.Redis.from_url(settings.REDIS_URL)
    pubsub = client.pubsub()
    pubsub.subscribe(f"gate:action:{action.pk}")
    pubsub.get_message(timeout=1)  # the subscription's confirmation

    transition_apply(
        "decide",
        action_id=str(action.pk),
        cause=Cause.REVIEWER,
        actor="x",
        to=Status.REJECTED,
        announce={"metrics": {"kind": "review", "action_type": "t", "verdict": "reject", "waited": 1.0}},
    )

    message = pubsub.get_message(timeout=2)
    assert message is not None
    assert message["data"] == b"rejected"
    assert recorded == ["reject"]
    # the mark is written by the process's marking thread, in batches
    outbox.outbox_flush_marks()
    row = OutboxEvent.objects.get(action=action)
    assert row.dispatched_at is not None
    assert recorded == ["reject"]
    # dispatched again (a sweep that raced the commit's dispatch): pushed again, counted once
    assert outbox.outbox_dispatch([row]) == 0
    assert pubsub.get_message(timeout=2)["data"] == b"rejected"
    assert recorded == ["reject"]
    pubsub.close()


@pytest.mark.django_db(transaction=True)
def test_the_sweep_dispatches_what_a_commit_left_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    action = ProposedActionFactory(status=Status.NEEDS_REVIEW, callback_url="https://hooks.example/gate")
    queued: list[int] = []
    monkeypatch.setattr(outbox, "outbox_dispatch", lambda rows, **_: 0)  # the process "died" after its commit
    transition_apply("expire", action_id=str(action.pk), cause=Cause.DEADLINE, actor="system")
    monkeypatch.undo()
    row = OutboxEvent.objects.get(action=action)
    delivery = WebhookDelivery.objects.get(action=action)
    assert row.dispatched_at is None
    assert row.payload["webhook_delivery"] == delivery.pk
    assert delivery.event == "action.expired"
    assert '"status":"expired"' in delivery.body

    from approvals.integrations import tasks as integration_tasks

    monkeypatch.setattr(integration_tasks.deliver_webhook, "delay", queued.append)
    assert outbox.outbox_sweep(older_than=timezone.timedelta(0)) == 1
    row.refresh_from_db()
    assert row.dispatched_at is not None
    assert queued == [delivery.pk]
    assert outbox.outbox_sweep(older_than=timezone.timedelta(0)) == 0


@pytest.mark.django_db
def test_old_dispatched_rows_are_pruned_and_undispatched_ones_kept() -> None:
    old = timezone.now() - timezone.timedelta(hours=48)
    action = ProposedActionFactory(status=Status.NEEDS_REVIEW)
    done = OutboxEvent.objects.create(action=action, event="x", status="s", created_at=old, dispatched_at=old)
    waiting = OutboxEvent.objects.create(action=action, event="x", status="s", created_at=old)
    fresh = OutboxEvent.objects.create(action=action, event="x", status="s", dispatched_at=timezone.now())
    assert outbox.outbox_prune(older_than=timezone.timedelta(hours=24)) == 1
    assert set(OutboxEvent.objects.values_list("pk", flat=True)) == {waiting.pk, fresh.pk}
    assert not OutboxEvent.objects.filter(pk=done.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_the_marks_of_dispatched_rows_are_written_by_the_process_thread() -> None:
    actions = [ProposedActionFactory(status=Status.NEEDS_REVIEW) for _ in range(3)]
    for action in actions:
        transition_apply("decide", action_id=str(action.pk), cause=Cause.REVIEWER, actor="x", to=Status.APPROVED)
    deadline = time.monotonic() + 5
    while OutboxEvent.objects.filter(dispatched_at__isnull=True).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert OutboxEvent.objects.filter(action__in=actions, dispatched_at__isnull=False).count() == 3
    assert outbox.outbox_sweep(older_than=timezone.timedelta(0)) == 0
