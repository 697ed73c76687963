from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from approvals.gate.agents import agent_create, agent_rotate_token
from approvals.gate.policies import policies_import
from approvals.gate.services import action_propose, request_fingerprint
from approvals.management.commands.import_policies import load_policy_file
from approvals.models import ActionType, Agent, ProposedAction

DEMO_POLICY = Path(settings.BASE_DIR) / "policies" / "demo.yaml"

ORDER_LOOKUP = {
    "kind": "tool_call",
    "tool": "get_order",
    "args": {"order_id": "A-1001"},
    "result": '{"order_id": "A-1001", "total": 120.0, "status": "delivered"}',
}
CUSTOMER = {"kind": "message", "role": "user", "content": "My blender arrived broken, can I get my money back?"}

DEMO_PROPOSALS: list[dict[str, Any]] = [
    {
        "action_type": "refund",
        "params": {"order_id": "A-1001", "amount": 42.5},
        "confidence": 0.93,
        "rationale": "Damaged item; order looked up",
        "trajectory": [CUSTOMER, ORDER_LOOKUP],
    },
    {
        "action_type": "refund",
        "params": {"order_id": "A-1001", "amount": 115.0},
        "confidence": 0.8,
        "rationale": "Full refund requested",
        "trajectory": [CUSTOMER, ORDER_LOOKUP],
    },
    {
        "action_type": "refund",
        "params": {"order_id": "B-2002", "amount": 30},
        "confidence": 0.7,
        "rationale": "Customer says B-2002 was late",
        "trajectory": [CUSTOMER, ORDER_LOOKUP],
    },
    {
        "action_type": "refund",
        "params": {"order_id": "A-1001", "amount": "all"},
        "rationale": "Refund everything",
        "trajectory": [CUSTOMER],
    },
    {
        "action_type": "escalate_ticket",
        "params": {"ticket_id": "T-88", "team": "legal"},
        "rationale": "Customer threatens to sue",
        "context": {"ticket_id": "T-88"},
    },
    {"action_type": "cancel_subscription", "params": {"customer_id": "C-19"}, "rationale": "Asked to cancel"},
]


class Command(BaseCommand):
    help = "Load the demo policy, a demo agent, demo users and a few proposals (for the embedded demo)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--password", default="demo", help="password of the demo users admin and reviewer")

    def handle(self, *args: Any, password: str, **options: Any) -> None:
        if not ActionType.objects.exists():
            version = policies_import(
                document=load_policy_file(str(DEMO_POLICY)), actor="command:seed_demo", source="seed"
            )
            self.stdout.write(f"policy: {DEMO_POLICY.name} as policy_version {version}")
        with transaction.atomic():
            admin, _ = User.objects.get_or_create(username="admin", defaults={"is_staff": True, "is_superuser": True})
            admin.set_password(password)
            admin.save()
            reviewer, _ = User.objects.get_or_create(username="reviewer")
            reviewer.set_password(password)
            reviewer.save()
            reviewer.groups.add(Group.objects.get(name="reviewers"))
        # A fresh token on every run: tokens are stored hashed, so the old one cannot be shown again.
        Agent.objects.filter(name="demo-agent", actions__isnull=True).delete()
        agent = Agent.objects.filter(name="demo-agent").first()
        if agent is None:
            agent, token = agent_create(name="demo-agent", actor="command:seed_demo")
        else:
            # The demo prints one token: the previous run's stops at once, no grace period.
            token = agent_rotate_token(agent=agent, actor="command:seed_demo", grace_minutes=0)
        if not ProposedAction.objects.filter(agent=agent).exists():
            for index, proposal in enumerate(DEMO_PROPOSALS):
                body = {**proposal, "idempotency_key": f"demo-{index}"}
                action_type = ActionType.objects.get(name=body.pop("action_type"))
                action_propose(
                    agent=agent,
                    action_type=action_type,
                    fingerprint=request_fingerprint(body),
                    params=body["params"],
                    trajectory_raw=body.get("trajectory"),
                    context=body.get("context"),
                    confidence=body.get("confidence"),
                    rationale=body.get("rationale", ""),
                    idempotency_key=body["idempotency_key"],
                )
        self.stdout.write(f"users: admin / {password} (superuser), reviewer / {password} (reviewers group)")
        self.stdout.write("agent: demo-agent")
        self.stdout.write(f"token: {token}")
        self.stdout.write(f"webhook_secret: {agent.webhook_secret}")
        # The line the README's quick start asks to paste into the shell that runs its examples.
        self.stdout.write(f"export TOKEN={token}")
