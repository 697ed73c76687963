"""The audit log is append-only in the database and hash-chained: per action plus the gate chain.

Real PostgreSQL throughout: the trigger, the advisory lock serialising a chain's writers (50 threads
on their own connections), and `manage.py verify_audit` finding a tampered or deleted link.
"""

from __future__ import annotations

import io
import itertools
import os
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from approvals.gate.services import action_evaluate, action_propose, request_fingerprint
from approvals.lifecycle import audit_chain
from approvals.lifecycle.audit import audit_record
from approvals.models import ActionType, Agent, AuditEvent, ProposedAction, Status
from approvals.review.services import action_decide, label_create
from tests.conftest import LOOKED_UP, ROOT, subprocess_database_url
from tests.factories import AgentFactory, ProposedActionFactory, ReviewerFactory

TABLE = AuditEvent._meta.db_table
TRIGGER = "audit_append_only"


def verify(*args: str) -> str:
    out = io.StringIO()
    call_command("verify_audit", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def verify_fails(*args: str) -> CommandError:
    with pytest.raises(CommandError) as failed:
        call_command("verify_audit", *args, stdout=io.StringIO(), stderr=io.StringIO())
    return failed.value


def chain_events(chain: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(chain=chain).order_by("seq"))


def tamper(sql: str, params: list[Any]) -> None:
    """What a superuser with psql could do: switch the trigger off, change the table, switch it on."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no deferred FK checks pending: ALTER TABLE needs that
        cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER {TRIGGER}")
        cursor.execute(sql, params)
        cursor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER {TRIGGER}")


def propose(agent: Agent, amount: int) -> ProposedAction:
    params = {"order_id": "A-1", "amount": amount}
    body = {"action_type": "refund", "params": params, "trajectory": LOOKED_UP}
    action, created = action_propose(
        agent=agent,
        action_type=ActionType.objects.get(name="refund"),
        params=params,
        fingerprint=request_fingerprint(body),
        trajectory_raw=LOOKED_UP,
    )
    assert created
    return action


@pytest.fixture
def decided(policy_v1: int, agent: Agent) -> ProposedAction:
    """propose -> evaluate (held: amount above the auto limit) -> approve -> label, through the services."""
    action = propose(agent, amount=500)
    action_evaluate(action_id=str(action.id))
    action.refresh_from_db()
    assert action.status == Status.NEEDS_REVIEW
    reviewer = ReviewerFactory(username="lead")
    action_decide(action_id=str(action.id), user=reviewer, verdict="approve", reason="checked the order")
    action.refresh_from_db()
    label_create(action=action, author=reviewer, label="safe", tags=["refund"], note="fine")
    return action


# --- the trigger --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_database_refuses_update_and_delete_through_the_orm():
    event = audit_record(action=None, event="test", actor="test", data={"n": 1})
    with pytest.raises(DatabaseError, match="append-only: UPDATE"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(actor="someone else")
    with pytest.raises(DatabaseError, match="append-only: DELETE"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    with pytest.raises(ValueError, match="append-only"):
        event.delete()
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.actor, stored.hash) == ("test", event.hash)


@pytest.mark.django_db
def test_the_database_refuses_update_and_delete_in_raw_sql():
    event = audit_record(action=None, event="test", actor="test")
    for sql in (
        f"UPDATE {TABLE} SET data = '{{\"forged\": true}}' WHERE id = %s",
        f"UPDATE {TABLE} SET hash = prev_hash WHERE id = %s",
        f"DELETE FROM {TABLE} WHERE id = %s",
    ):
        with (
            pytest.raises(DatabaseError, match="audit events are append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [event.pk])
    assert AuditEvent.objects.filter(pk=event.pk, data={}).exists()
    verify()


# --- the chain through the real services --------------------------------------------------------------


@pytest.mark.django_db
def test_an_actions_events_chain_through_the_services(decided):
    events = chain_events(str(decided.id))
    assert [e.event for e in events] == ["proposed", "evaluated", "decided", "labelled"]
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert events[0].prev_hash == audit_chain.GENESIS
    for previous, event in itertools.pairwise(events):
        assert event.prev_hash == previous.hash
    for event in events:
        assert event.action_id == decided.id
        assert event.hash == audit_chain.event_hash(event, event.prev_hash)  # as stored, as read back
    # The gate chain holds what has no action (the policy import, the agent), chained the same way.
    gate = chain_events(audit_chain.GATE_CHAIN)
    assert gate
    assert [e.seq for e in gate] == list(range(1, len(gate) + 1))
    assert all(e.action_id is None for e in gate)
    assert verify("--chain", str(decided.id)).startswith("audit log intact: 4 events in 1 chains")
    total = AuditEvent.objects.count()
    chains = AuditEvent.objects.values("chain").distinct().count()
    assert verify().startswith(f"audit log intact: {total} events in {chains} chains")


@pytest.mark.django_db
def test_data_is_hashed_as_the_database_returns_it():
    # Tuples come back as lists, integer keys as strings, floats and unicode unchanged.
    data = {"tuple": (1, 2), 3: "three", "float": 0.1, "tiny": 1e-07, "text": "Zoë ✓", "nested": {"b": 1, "a": None}}
    event = audit_record(action=None, event="test", actor="agent:é", data=data)
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.data == {"tuple": [1, 2], "3": "three", "float": 0.1, "tiny": 1e-07, "text": "Zoë ✓",
                           "nested": {"b": 1, "a": None}}  # fmt: skip
    assert stored.hash == event.hash == audit_chain.event_hash(stored, stored.prev_hash)
    verify()


@pytest.mark.django_db
def test_verify_audit_rejects_a_malformed_chain_name_and_an_unknown_chain():
    assert "expected an action id" in str(verify_fails("--chain", "nonsense"))
    assert "1 requested chain(s) have no events" in str(verify_fails("--chain", str(uuid.uuid4())))


# --- tampering ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_altered_content_is_reported_at_exactly_that_link(decided):
    events = chain_events(str(decided.id))
    target = events[2]  # "decided"
    tamper(f'UPDATE {TABLE} SET data = data || \'{{"reason": "forged"}}\' WHERE id = %s', [target.pk])
    error = verify_fails()
    assert error.returncode == 2
    assert f"chain {decided.id} seq 3 (audit event id {target.pk}): content altered" in str(error)
    # Only that link: its successor still points at the hash it stored.
    error = verify_fails("--max-errors", "0")
    assert "1 broken link(s)" in str(error)
    # Other chains are intact.
    verify("--chain", "gate")


@pytest.mark.django_db
def test_a_rehashed_forgery_breaks_the_next_link(decided):
    events = chain_events(str(decided.id))
    forged = events[1]
    forged.actor = "policy-forged"
    new_hash = audit_chain.event_hash(forged, forged.prev_hash)  # the forger recomputes this link's hash
    tamper(f"UPDATE {TABLE} SET actor = %s, hash = %s WHERE id = %s", [forged.actor, new_hash, forged.pk])
    error = str(verify_fails())
    assert f"chain {decided.id} seq 3 (audit event id {events[2].pk}): link to previous broken" in error


@pytest.mark.django_db
def test_a_deleted_middle_event_is_reported_as_a_gap(decided):
    events = chain_events(str(decided.id))
    tamper(f"DELETE FROM {TABLE} WHERE id = %s", [events[1].pk])
    error = str(verify_fails("--chain", str(decided.id)))
    assert f"chain {decided.id} seq 3 (audit event id {events[2].pk}): sequence gap: seq 2 missing" in error
    assert "link to previous broken" in error


@pytest.mark.django_db(transaction=True)
def test_verify_audit_exits_non_zero_as_a_process(policy_v1, agent):
    action = propose(agent, amount=20)
    run = [sys.executable, "manage.py", "verify_audit"]
    env = {**os.environ, "DATABASE_URL": subprocess_database_url()}
    clean = subprocess.run(run, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout.startswith("audit log intact:")
    first = chain_events(str(action.id))[0]
    tamper(f"UPDATE {TABLE} SET actor = 'agent:someone-else' WHERE id = %s", [first.pk])
    broken = subprocess.run(run, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert broken.returncode == 2
    assert f"chain {action.id} seq 1 (audit event id {first.pk}): content altered" in broken.stderr


# --- concurrent writers ---------------------------------------------------------------------------------

WRITERS = 50
EVENTS_PER_WRITER = 4


def run_together(calls: list[Callable[[], Any]]) -> None:
    barrier = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def worker(call: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=60)
            call()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    assert not errors, errors


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_writers_leave_gap_free_verified_chains():
    agent = AgentFactory()
    shared = ProposedActionFactory(agent=agent)
    own = [ProposedActionFactory(agent=agent, action_type=shared.action_type) for _ in range(WRITERS)]
    connection.close()  # the threads open their own connections
    expected: Counter[str] = Counter()
    calls: list[Callable[[], Any]] = []
    for n in range(WRITERS):
        # A third write to one shared action, a third each to their own action, a third to the gate chain.
        target = [shared, own[n], None][n % 3]
        expected[audit_chain.chain_of(target.pk if target else None)] += EVENTS_PER_WRITER

        def write(target: ProposedAction | None = target, n: int = n) -> None:
            for i in range(EVENTS_PER_WRITER):
                with transaction.atomic():  # the caller's transaction, as in every service
                    audit_record(action=target, event="concurrent", actor=f"writer:{n}", data={"i": i})

        calls.append(write)
    run_together(calls)

    for chain, count in expected.items():
        assert list(AuditEvent.objects.filter(chain=chain).order_by("seq").values_list("seq", flat=True)) == list(
            range(1, count + 1)
        )
    total = sum(expected.values())
    assert AuditEvent.objects.count() == total
    assert verify().startswith(f"audit log intact: {total} events in {len(expected)} chains")
