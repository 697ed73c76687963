"""Live pushes follow the review groups (contract §6.3): a review page hears of the actions its
reviewer may review, and of no other. Real transitions, committed, fanned out by the outbox to the
Redis channel layer and received through the real ASGI application."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User

from approvals.lifecycle import events
from approvals.models import ProposedAction
from approvals.review.services import action_escalate
from tests.review.routing_setup import Routed, held, routed_gate
from tests.review.test_consumers import connect, session_cookie_for

pytestmark = pytest.mark.django_db(transaction=True)


async def page_of(user: User) -> WebsocketCommunicator:
    communicator, connected = await connect(await database_sync_to_async(session_cookie_for)(user))
    assert connected
    return communicator


async def next_push(page: WebsocketCommunicator) -> dict[str, Any]:
    message: dict[str, Any] = await page.receive_json_from(timeout=5)
    return message


async def test_a_held_action_is_pushed_to_its_groups_members_and_superusers_not_to_others() -> None:
    gate: Routed = await database_sync_to_async(routed_gate)()
    member, outsider, root = await page_of(gate.member), await page_of(gate.outsider), await page_of(gate.superuser)

    refund: ProposedAction = await database_sync_to_async(held)(gate.agent)
    ticket: ProposedAction = await database_sync_to_async(held)(gate.agent, "escalate_ticket")

    for page in (member, root):
        assert [(await next_push(page))["action_id"] for _ in range(2)] == [str(refund.id), str(ticket.id)]
    # the outsider's page is open and hears the ungrouped type, and only that
    assert await next_push(outsider) == {"event": "evaluated", "action_id": str(ticket.id), "status": "needs_review"}
    assert await outsider.receive_nothing(timeout=0.5)
    for page in (member, outsider, root):
        await page.disconnect()


async def test_the_escalation_group_hears_of_an_action_from_its_escalation_on() -> None:
    gate: Routed = await database_sync_to_async(routed_gate)()
    escalator = await page_of(gate.escalator)

    refund: ProposedAction = await database_sync_to_async(held)(gate.agent)
    assert await escalator.receive_nothing(timeout=0.5)
    assert refund.sla_deadline is not None
    escalated = await database_sync_to_async(action_escalate)(
        action_id=str(refund.id), now=refund.sla_deadline + timedelta(seconds=1)
    )

    assert escalated
    assert await next_push(escalator) == {"event": "escalated", "action_id": str(refund.id), "status": "needs_review"}
    await escalator.disconnect()


def test_push_groups_and_listener_groups_meet_as_the_predicate_says() -> None:
    """Every (type, escalation) case: a reviewer's page hears an action exactly when
    actions_reviewable_by lets them see it (test_routing checks that side against the database)."""
    # review group 1, escalation group 2; the reviewer in group 1, in group 2, in neither; a superuser
    listeners = {
        "member": set(events.listener_groups(superuser=False, group_ids=[1])),
        "escalator": set(events.listener_groups(superuser=False, group_ids=[2])),
        "outsider": set(events.listener_groups(superuser=False, group_ids=[3])),
        "root": set(events.listener_groups(superuser=True, group_ids=[])),
    }
    cases = {
        (None, None, False): {"member", "escalator", "outsider", "root"},
        (1, 2, False): {"member", "root"},
        (1, 2, True): {"member", "escalator", "root"},
        (1, None, True): {"member", "root"},
    }
    for (review, escalation, escalated), hearing in cases.items():
        groups = set(events.push_groups(review_group_id=review, escalation_group_id=escalation, escalated=escalated))
        assert {who for who, joined in listeners.items() if joined & groups} == hearing
