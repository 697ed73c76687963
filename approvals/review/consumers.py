"""Live updates for open review pages: every change of an action the reviewer may review (its
type's review groups, contract §6.3), pushed after its commit."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from approvals.lifecycle import events


def _listener_groups(user: Any) -> list[str] | None:
    """The Channels groups of the user's page (events.listener_groups), or None for one who is not
    a reviewer. A change of the user's groups reaches an open page when it reconnects."""
    from approvals.api.permissions import is_reviewer

    if not is_reviewer(user):
        return None
    group_ids = [] if user.is_superuser else list(user.groups.values_list("pk", flat=True))
    return events.listener_groups(superuser=user.is_superuser, group_ids=group_ids)


class QueueConsumer(AsyncJsonWebsocketConsumer):
    joined: list[str]

    async def connect(self) -> None:
        self.joined = []
        user = self.scope.get("user")
        groups = None
        if user is not None and user.is_authenticated:
            groups = await database_sync_to_async(_listener_groups)(user)
        if groups is None:
            await self.close(code=4403)
            return
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
        self.joined = groups
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def action_changed(self, message: dict[str, Any]) -> None:
        await self.send_json({k: v for k, v in message.items() if k != "type"})
