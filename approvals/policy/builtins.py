"""The gate's own checks (``builtin_checks``, contract §5 and §6.1), beside the policy's rules:

- ``repeat_of_refused``: an identical proposal of this agent was refused in the last 24 hours;
- ``repeat_of_executed``: the same effect was already done: an action of this agent with equal
  identity params approved in the same session and not reported failed (found by the caller in
  the gate's own history), or an earlier successful call in the trajectory of a tool named like
  the action type with equal identity arguments;
- ``looping_trajectory``: the same tool call several times among the last calls.

Each is a finding; a failed one holds the action for a person (step 4).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from approvals.policy.evidence import identity_of
from approvals.policy.findings import finding

# The same tool call this many times among the last LOOP_WINDOW calls.
LOOP_WINDOW = 10
LOOP_REPEATS = 3
# A tool result that reports a failure, as tools commonly word it.
FAILED_STATUSES = frozenset({"error", "failed", "failure"})


def _call_key(step: dict) -> str:
    return step["tool"] + json.dumps(step["args"], sort_keys=True, default=str)


def tool_name_key(name: str) -> str:
    """Tool and action type names compared without case, and with ``-``, ``.`` and ``_`` alike."""
    return name.lower().replace("-", "_").replace(".", "_")


def result_failed(result: Any) -> bool:
    """Whether a tool result reports that the call failed: a text that starts with "error", or an
    object with a non-empty ``error``, ``ok: false``, ``success: false`` or an error ``status``.
    Any other result, none included, counts as done: a call is taken as executed unless it says
    it was not."""
    if isinstance(result, str):
        return result.strip().lower().startswith("error")
    if isinstance(result, dict):
        if result.get("error"):
            return True
        if result.get("ok") is False or result.get("success") is False:
            return True
        status = result.get("status")
        return isinstance(status, str) and status.lower() in FAILED_STATUSES
    return False


def executed_in_trajectory(
    trajectory: list[dict], action_type: str, params: Any, identity_params: tuple[str, ...] | None
) -> int | None:
    """The index of an earlier successful call of a tool named like ``action_type`` whose
    arguments have the same identity as ``params``, or None."""
    wanted = tool_name_key(action_type)
    identity = identity_of(params, identity_params)
    for index, step in enumerate(trajectory):
        if step["kind"] != "tool_call" or tool_name_key(step["tool"]) != wanted:
            continue
        if identity_of(step["args"], identity_params) == identity and not result_failed(step["result"]):
            return index
    return None


def repeat_of_executed_finding(
    *,
    action_type: str,
    params: Any,
    trajectory: list[dict],
    executed_repeat_of: dict | None,
    identity_params: tuple[str, ...] | None,
) -> dict:
    same = "with the same " + (", ".join(identity_params) if identity_params else "params")
    if executed_repeat_of:
        return finding(
            "repeat_of_executed",
            "fail",
            "review",
            f"the same effect ({same}) was already {executed_repeat_of['status']} as action "
            f"{executed_repeat_of['id']} in this session: activity without progress",
            repeat_of=executed_repeat_of["id"],
        )
    step = executed_in_trajectory(trajectory, action_type, params, identity_params)
    if step is not None:
        return finding(
            "repeat_of_executed",
            "fail",
            "review",
            f"the trajectory already holds a successful call of {trajectory[step]['tool']} {same} "
            f"(step {step + 1}): activity without progress",
            step=step,
        )
    return finding("repeat_of_executed", "pass", "none", f"no earlier executed call {same}")


def builtin_findings(proposal: Any, *, identity_params: tuple[str, ...] | None = None) -> list[dict]:
    """The built-in checks of a proposal (an approvals.policy.engine.Proposal)."""
    findings: list[dict] = []
    refused = proposal.refused_repeat_of
    if refused:
        findings.append(
            finding(
                "repeat_of_refused",
                "fail",
                "review",
                f"identical to proposal {refused['id']} of the last 24 hours, which was {refused['status']}",
                repeat_of=refused["id"],
            )
        )
    else:
        findings.append(
            finding("repeat_of_refused", "pass", "none", "not a repeat of a proposal refused in the last 24 hours")
        )
    findings.append(
        repeat_of_executed_finding(
            action_type=proposal.action_type,
            params=proposal.params,
            trajectory=proposal.trajectory,
            executed_repeat_of=proposal.executed_repeat_of,
            identity_params=identity_params,
        )
    )
    findings.append(looping_finding(proposal.trajectory))
    return findings


def looping_finding(trajectory: list[dict]) -> dict:
    calls = [step for step in trajectory if step["kind"] == "tool_call"][-LOOP_WINDOW:]
    # Count by tool name first: serialising arguments is needed only for a tool seen often enough.
    frequent = {tool for tool, n in Counter(s["tool"] for s in calls).items() if n >= LOOP_REPEATS}
    keys = Counter(_call_key(s) for s in calls if s["tool"] in frequent)
    repeated = [(key, n) for key, n in keys.most_common(1) if n >= LOOP_REPEATS]
    if repeated:
        tool = next(s["tool"] for s in calls if s["tool"] in frequent and _call_key(s) == repeated[0][0])
        return finding(
            "looping_trajectory",
            "fail",
            "review",
            f"the same call to {tool} appears {repeated[0][1]} times in the last {len(calls)} tool calls: "
            "activity without progress",
        )
    return finding(
        "looping_trajectory",
        "pass",
        "none",
        f"no call repeated {LOOP_REPEATS} times in the last {LOOP_WINDOW} tool calls",
    )
