"""The LangGraph agent of ``langgraph_agent.py`` across a restart: the process stops while a human
decides, and a later process continues the same thread once the gate has an answer.

    # 1. run until a gated call is held; save the graph's checkpoint and the pending handle; exit
    python examples/agents/langgraph_restart.py stop --dir /tmp/agent-state --token gat_...
    # ... a reviewer decides at the printed review URL (or via the API) ...
    # 2. later, in a new process: wait for the decision (poll), resume the graph; the tool runs once
    python examples/agents/langgraph_restart.py resume --dir /tmp/agent-state --token gat_...

The graph state is kept by ``FileCheckpointer`` (an ``InMemorySaver`` written to a JSON file after
each step; use ``langgraph-checkpoint-postgres`` in production); the gate's side is a
``gate_client.PendingAction`` saved with ``to_json()``, which carries the thread id, and is
picked up with ``Gate.resume(handle, timeout=…)``. A webhook-driven agent would run step 2 when
the gate's ``action.decided`` webhook arrives instead of polling. A resumed thread whose call was
already carried out does not run it again: the gate node asks the gate, and the graph has moved on.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gate_client import ApprovalTimeout, Gate, PendingAction
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver

sys.path.insert(0, str(Path(__file__).resolve().parent))
import langgraph_agent as lg

# --- a checkpointer that survives the process -----------------------------------------------------


def _encode(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"b": base64.b64encode(value).decode()}
    if isinstance(value, tuple):
        return {"t": [_encode(item) for item in value]}
    if isinstance(value, dict):
        return {"d": [[_encode(key), _encode(item)] for key, item in value.items()]}
    if isinstance(value, list):
        return [_encode(item) for item in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(item) for item in value]
    if isinstance(value, dict):
        if "b" in value:
            return base64.b64decode(value["b"])
        if "t" in value:
            return tuple(_decode(item) for item in value["t"])
        return {_decode(key): _decode(item) for key, item in value["d"]}
    return value


class FileCheckpointer(InMemorySaver):
    """LangGraph's in-memory saver, loaded from ``path`` at start and written back after each put."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._lock = threading.RLock()  # LangGraph writes from worker threads
        if path.exists():
            saved = _decode(json.loads(path.read_text()))
            for thread, namespaces in saved["storage"].items():
                for namespace, checkpoints in namespaces.items():
                    self.storage[thread][namespace].update(checkpoints)
            for key, writes in saved["writes"].items():
                self.writes[key].update(writes)
            self.blobs.update(saved["blobs"])

    def _save(self) -> None:
        state = {
            "storage": {thread: {ns: dict(cps) for ns, cps in nss.items()} for thread, nss in self.storage.items()},
            "writes": {key: dict(writes) for key, writes in self.writes.items()},
            "blobs": dict(self.blobs),
        }
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(_encode(state)))
        temporary.replace(self.path)

    def put(self, *args: Any, **kwargs: Any) -> RunnableConfig:
        with self._lock:
            config = super().put(*args, **kwargs)
            self._save()
            return config

    def put_writes(self, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            super().put_writes(*args, **kwargs)
            self._save()

    def delete_thread(self, thread_id: str) -> None:
        with self._lock:
            super().delete_thread(thread_id)
            self._save()


# --- the two halves ---------------------------------------------------------------------------------


def pending_handles(graph: lg.AnyGraph, config: RunnableConfig) -> list[PendingAction]:
    """A ``PendingAction`` for each gate review the thread is paused on, carrying the thread id."""
    thread_id = str((config.get("configurable") or {})["thread_id"])
    return [
        PendingAction(
            action_id=payload["action_id"],
            action_type=payload["action_type"],
            params=dict(payload["params"]),
            status=payload["status"],
            review_url=payload["review_url"],
            tool_call_id=payload["tool_call_id"],
            extra={"thread_id": thread_id},
        )
        for _, payload in lg.gate_interrupts(graph, config)
    ]


def build(gate: Gate, directory: Path, script: Sequence[lg.ScriptStep]) -> lg.AnyGraph:
    directory.mkdir(parents=True, exist_ok=True)
    return lg.build_agent_graph(
        lg.ScriptedModel(script),
        gate,
        read_only_tools={"get_order": lg.get_order},
        gated_tools={"refund": lg.refund},
        checkpointer=FileCheckpointer(directory / "checkpoints.json"),
    )


def stop_when_held(gate: Gate, directory: Path, question: str, order_id: str, amount: float) -> int:
    """Run a conversation; if a gated call is held, save its handle and stop (the process may exit)."""
    graph = build(gate, directory, [lg.tool_call("refund", order_id=order_id, amount=amount)])
    config: RunnableConfig = {"configurable": {"thread_id": f"restart-{uuid.uuid4().hex[:8]}"}}
    print(f"user: {question}")
    state = graph.invoke({"messages": [HumanMessage(question)]}, config)
    handles = pending_handles(graph, config)
    if not handles:
        print(f"agent: {state['messages'][-1].text}")
        return 0
    (directory / "pending.json").write_text(handles[0].to_json())
    print(f"held: {handles[0].action_type} {handles[0].action_id} is {handles[0].status}; decide it at")
    print(f"  {handles[0].review_url}")
    print(f"stopped; the handle is in {directory / 'pending.json'}", flush=True)
    return 0


def resume(gate: Gate, directory: Path, timeout: float) -> int:
    """Load the handle, wait for the decision, and continue the saved thread."""
    handle = PendingAction.from_json((directory / "pending.json").read_text())
    config: RunnableConfig = {"configurable": {"thread_id": handle.extra["thread_id"]}}
    graph = build(gate, directory, [lg.reply_with_last_result])
    action = gate.resume(handle, timeout=timeout)  # poll-driven; a webhook would trigger this instead
    print(f"{handle.action_type} {action.id}: {action.status} ({action.reason})")
    try:
        state = lg.resume_when_decided(graph, config, gate, timeout=timeout)
    except ApprovalTimeout as exc:
        print(f"{exc}; the thread stays saved")
        return 1
    print(f"agent: {state['messages'][-1].text}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("mode", choices=["stop", "resume"])
    parser.add_argument("--dir", type=Path, required=True, help="where the checkpoint and the handle are kept")
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--token", required=True, help="an agent token (manage.py create_agent NAME)")
    parser.add_argument("--order", default="A-2002")
    parser.add_argument("--amount", type=float, default=30)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for a reviewer")
    args = parser.parse_args(argv)
    with Gate(args.base_url, args.token) as gate:
        if args.mode == "stop":
            question = f"Refund {args.amount:g} on order {args.order}, now."
            return stop_when_held(gate, args.dir, question, args.order, args.amount)
        return resume(gate, args.dir, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
