from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import IntegrityError

from approvals.errors import ServiceError
from approvals.gate.agents import agent_create


class Command(BaseCommand):
    help = "Create an agent and print its bearer token and webhook secret (shown only now)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument(
            "--action-types",
            help="Comma-separated action types the agent may propose (default: every type, later ones included)",
        )

    def handle(self, *args: Any, name: str, action_types: str | None, **options: Any) -> None:
        types = [t.strip() for t in action_types.split(",") if t.strip()] if action_types is not None else None
        try:
            agent, token = agent_create(name=name, action_types=types, actor="command:create_agent")
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        except IntegrityError:
            raise CommandError(f"an agent named {name!r} already exists") from None
        self.stdout.write(f"agent: {agent.name}")
        self.stdout.write(f"token: {token}")
        self.stdout.write(f"webhook_secret: {agent.webhook_secret}")
