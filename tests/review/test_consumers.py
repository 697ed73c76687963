"""The review pages' websocket, through the real ASGI application and the Redis channel layer."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from approvals.lifecycle import events
from escalation_app.asgi import application
from tests.factories import ReviewerFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def session_cookie_for(user: Any) -> bytes:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


async def connect(cookie: bytes | None) -> tuple[WebsocketCommunicator, bool]:
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    if cookie:
        headers.append((b"cookie", cookie))
    communicator = WebsocketCommunicator(application, "/ws/review/", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    return communicator, connected


async def test_reviewer_receives_every_committed_change() -> None:
    reviewer = await database_sync_to_async(ReviewerFactory)()
    communicator, connected = await connect(await database_sync_to_async(session_cookie_for)(reviewer))
    assert connected

    await database_sync_to_async(events.action_changed)(action_id="a-1", status="needs_review", event="evaluated")

    message = await communicator.receive_json_from(timeout=5)
    assert message == {"event": "evaluated", "action_id": "a-1", "status": "needs_review"}
    await communicator.disconnect()


@pytest.mark.parametrize("kind", ["anonymous", "not_a_reviewer"])
async def test_others_are_refused(kind: str) -> None:
    cookie = None
    if kind == "not_a_reviewer":
        cookie = await database_sync_to_async(session_cookie_for)(await database_sync_to_async(UserFactory)())

    communicator, connected = await connect(cookie)

    assert not connected
    await communicator.disconnect()
