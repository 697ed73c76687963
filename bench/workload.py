"""What the benchmarks and the soak send: the policy, a ~1 KB proposal with a 5-step trajectory,
and tau-bench-sized proposals (examples/tau_bench_airline)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TAU_DIR = ROOT / "examples" / "tau_bench_airline"

# The refund type every benchmark and the test suite (tests/conftest.py) propose against.
REFUND_TYPE: dict[str, Any] = {
    "name": "refund",
    "description": "Refund part or all of an order",
    "params_schema": {
        "type": "object",
        "required": ["order_id", "amount"],
        "properties": {"order_id": {"type": "string"}, "amount": {"type": "number", "minimum": 0}},
    },
    "base_risk": 0.1,
    "auto_approve_max_risk": 0.3,
    "amount_path": "amount",
    "max_auto_amount": 100,
    "review_sla_minutes": 30,
    "expire_after_minutes": 1440,
    "rules": [
        {
            "name": "order_was_looked_up",
            "require": "trajectory.exists(s, s.tool == 'get_order' && s.args.order_id == params.order_id)",
            "on_fail": "review",
            "message": "Refund for an order the agent never looked up",
        }
    ],
}
POLICY: dict[str, Any] = {"version": 1, "action_types": [REFUND_TYPE]}


# Replaced in every request a load generator sends (wrk_propose.lua, loadgen.open_loop) by that
# request's own key: each proposal is its own effect, as in real traffic. The same refund sent twice
# would be held by the built-in repeat_of_executed check (contract §6.1).
EACH = "@@N@@"


def each(body: dict[str, Any], key: str) -> dict[str, Any]:
    """``body`` with ``EACH`` replaced by ``key`` (for proposals sent without a load generator)."""
    return json.loads(json.dumps(body).replace(EACH, key))


def small_body(amount: float = 40, order_id: str = f"A-{EACH}") -> dict[str, Any]:
    """About 1 KB of JSON: a refund with a 5-step trajectory. ``amount`` over 100 is held for review.
    Its order is ``EACH`` (each request's own) unless given."""
    return {
        "action_type": "refund",
        "params": {"order_id": order_id, "amount": amount, "currency": "EUR", "reason": "arrived damaged"},
        "rationale": "The customer reports the item arrived broken; the order is within the refund window.",
        "confidence": 0.92,
        "trajectory": [
            {
                "kind": "message",
                "role": "user",
                "content": f"Hi, my order {order_id} arrived broken, the screen "
                "is cracked and it does not turn on. I would like my money back please.",
            },
            {
                "kind": "tool_call",
                "tool": "get_order",
                "args": {"order_id": order_id},
                "result": json.dumps({"order_id": order_id, "total": 80, "status": "delivered", "days_ago": 4}),
            },
            {
                "kind": "tool_call",
                "tool": "get_customer",
                "args": {"customer_id": "C-77"},
                "result": json.dumps({"customer_id": "C-77", "tier": "gold", "refunds_last_year": 0}),
            },
            {
                "kind": "message",
                "role": "assistant",
                "content": "I am sorry to hear that. The order is eligible "
                "for a refund; I will issue it to your original payment method now.",
            },
            {"kind": "message", "role": "user", "content": "Yes please, go ahead with the refund, thank you."},
        ],
    }


def tau_bodies() -> list[dict[str, Any]]:
    """The tau-bench airline proposals (about 18 KB each: a full conversation as trajectory)."""
    bodies = []
    for line in (TAU_DIR / "proposals.jsonl").read_text().splitlines():
        if line.strip():
            item = json.loads(line)
            body = {k: item[k] for k in ("action_type", "params", "trajectory", "context") if k in item}
            # each request its own agent session: the same call sent again is not a repeat of it
            body["context"] = {**body.get("context", {}), "session_id": f"{item.get('id', 'run')}-{EACH}"}
            bodies.append(body)
    return bodies


def tau_policy_path() -> Path:
    return TAU_DIR / "policy.yaml"
