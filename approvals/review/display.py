"""How the reviewer's desk shows an action: which checks failed, which tool results the rules read,
which colour a status banner takes. Plain data in, plain data out (no queries): the views read,
these helpers arrange what was read for the templates and for static/approvals/app.js."""

from __future__ import annotations

import json
import re
from typing import Any

from approvals.models import Status

# The banner of each status: info when the action may act (or nothing is wrong), warning while it
# waits or ran out of time, error only when it was refused. static/approvals/app.js reads this map
# (rendered with json_script) to recolour a banner and a badge after a live update.
STATUS_BANNERS: dict[str, str] = {
    Status.PENDING: "warning",
    Status.NEEDS_REVIEW: "warning",
    Status.EXPIRED: "warning",
    Status.AUTO_APPROVED: "info",
    Status.APPROVED: "info",
    Status.CANCELLED: "info",
    Status.REJECTED: "error",
    Status.BLOCKED: "error",
}
# Tool results unfolded when no rule names any tool of the trajectory: the last ones the agent saw.
UNFOLDED_FALLBACK = 2
WHY_HELD_SHOWN = 2


def pretty(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def banner_kind(status: str) -> str:
    return STATUS_BANNERS.get(status, "info")


def status_look() -> dict[str, dict[str, str]]:
    """Every status's display name and banner kind, for the page's script."""
    return {value: {"name": str(name), "banner": banner_kind(value)} for value, name in Status.choices}


def not_passed(findings: Any) -> list[dict[str, Any]]:
    """The checks an evaluation did not pass (failed or raised), in the order the gate ran them."""
    if not isinstance(findings, list):
        return []
    return [f for f in findings if isinstance(f, dict) and f.get("outcome") != "pass"]


def why_held(findings: Any) -> dict[str, Any]:
    """The queue's "why held" cell: the first failing checks, each with its full text for a title,
    and how many more there are."""
    failing = not_passed(findings)
    shown = [
        {
            "rule": str(f.get("rule", "?")),
            "message": str(f.get("message") or ""),
            "outcome": str(f.get("outcome", "")),
            "full": "; ".join(str(part) for part in (f.get("message"), f.get("error")) if part)
            or str(f.get("rule", "")),
        }
        for f in failing[:WHY_HELD_SHOWN]
    ]
    return {"shown": shown, "more": max(0, len(failing) - WHY_HELD_SHOWN)}


def findings_split(findings: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(failing first, then passing): what held the action, and what it passed, folded."""
    if not isinstance(findings, list):
        return [], []
    failing = not_passed(findings)
    return failing, [f for f in findings if isinstance(f, dict) and f.get("outcome") == "pass"]


def _mentions(text: str, name: str) -> bool:
    """``name`` occurs in ``text`` as a whole identifier (``get_order`` in ``s.tool == 'get_order'``,
    not in ``get_orders``)."""
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


def _rule_texts(findings: list[dict[str, Any]], requirements: dict[str, str]) -> dict[str, str]:
    """Each finding's rule, with everything that may name a tool: its expression, message, path and error."""
    texts: dict[str, str] = {}
    for f in findings:
        rule = str(f.get("rule", ""))
        parts = [requirements.get(rule, ""), f.get("message"), f.get("path"), f.get("error")]
        texts[rule] = " ".join(str(part) for part in parts if part)
    return texts


def trajectory_steps(trajectory: Any, findings: Any, requirements: dict[str, str]) -> tuple[list[dict[str, Any]], str]:
    """The trajectory for the page, each tool call marked ``unfolded`` when its result is one the
    rules read, and ``read_by`` the rules that name its tool. Tools named by a failing check come
    first; else any check's; else the last few tool results. Answers the steps and why those are open.

    A rule's text is read from its expression as the type holds it now (``requirements``) and from
    what its finding says: a tool named in either counts; a rule renamed or removed since counts by
    its finding alone."""
    steps = [
        {**step, "args_json": pretty(step.get("args")), "result_json": pretty(step.get("result"))}
        if step.get("kind") == "tool_call"
        else dict(step)
        for step in (trajectory if isinstance(trajectory, list) else [])
        if isinstance(step, dict)
    ]
    calls = [step for step in steps if step.get("kind") == "tool_call" and isinstance(step.get("tool"), str)]
    failing, passing = findings_split(findings)
    failing_texts, all_texts = _rule_texts(failing, requirements), _rule_texts(failing + passing, requirements)
    for step in calls:
        step["read_by"] = [
            {"rule": rule, "failed": rule in failing_texts}
            for rule, text in all_texts.items()
            if _mentions(text, step["tool"])
        ]
    opened = [step for step in calls if any(read["failed"] for read in step["read_by"])]
    why = "results the failing checks read"
    if not opened:
        opened, why = [step for step in calls if step["read_by"]], "results the checks read"
    if not opened:
        opened, why = calls[-UNFOLDED_FALLBACK:], "the last tool results"
    for step in opened:
        step["unfolded"] = True
    return steps, why if opened else ""
