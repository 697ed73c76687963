from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from approvals.gate.agents import agent_revoke_tokens
from approvals.models import Agent


class Command(BaseCommand):
    help = "Revoke every token of an agent at once; `rotate_agent_token NAME` issues a new one."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")

    def handle(self, *args: Any, name: str, **options: Any) -> None:
        agent = Agent.objects.filter(name=name).first()
        if agent is None:
            raise CommandError(f"no agent named {name!r}")
        agent_revoke_tokens(agent=agent, actor="command:revoke_agent_token")
        self.stdout.write(f"agent: {agent.name}")
        self.stdout.write("tokens: revoked")
