"""Live updates for open review pages: every change of an action, pushed after its commit."""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from approvals.lifecycle.events import QUEUE_GROUP


class QueueConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not await self._is_reviewer(user):
            await self.close(code=4403)
            return
        await self.channel_layer.group_add(QUEUE_GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(QUEUE_GROUP, self.channel_name)

    async def action_changed(self, message: dict[str, Any]) -> None:
        await self.send_json({k: v for k, v in message.items() if k != "type"})

    @staticmethod
    async def _is_reviewer(user: Any) -> bool:
        from channels.db import database_sync_to_async

        from approvals.api.permissions import is_reviewer

        return bool(await database_sync_to_async(is_reviewer)(user))
