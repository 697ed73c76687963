from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from approvals.errors import ServiceError
from approvals.gate.agents import agent_rotate_token
from approvals.models import Agent


class Command(BaseCommand):
    help = (
        "Issue a new bearer token for an agent (printed once, on a line 'token: <value>'). The previous "
        "token keeps working for the grace period, so the agent switches without downtime."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument(
            "--grace-minutes",
            type=int,
            default=None,
            help="Minutes the previous token keeps working (default: GATE_TOKEN_ROTATION_GRACE_MINUTES; 0: none)",
        )

    def handle(self, *args: Any, name: str, grace_minutes: int | None, **options: Any) -> None:
        agent = Agent.objects.filter(name=name).first()
        if agent is None:
            raise CommandError(f"no agent named {name!r}")
        try:
            token = agent_rotate_token(agent=agent, actor="command:rotate_agent_token", grace_minutes=grace_minutes)
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"agent: {agent.name}")
        self.stdout.write(f"token: {token}")
        until = agent.previous_token_expires_at
        self.stdout.write(f"previous_token_valid_until: {until.isoformat() if until else 'stopped'}")
