"""Slack, in its published formats (we cannot reach Slack itself: the tests check these formats
against a receiver on loopback).

- A held action is a Block Kit message: a section with the type, agent, risk and params, the checks
  it failed, a link to the desk, and an ``actions`` block with Approve (primary) and Reject (danger)
  buttons whose ``value`` is the action id. Once settled, the same message without buttons, saying
  how ("Approved by @x").
- Posted to an incoming webhook (``GATE_SLACK_WEBHOOK_URL``), or with a bot token by
  ``chat.postMessage`` (answering the channel and ts that ``chat.update`` needs later).
- Clicks arrive signed: ``X-Slack-Signature: v0=<hex HMAC-SHA256(signing secret,
  "v0:<X-Slack-Request-Timestamp>:<raw body>")>``.

Every request goes through the gate's address guard and pinned connection
(approvals.integrations.webhooks), with the webhook settings (GATE_WEBHOOK_ALLOW_PRIVATE,
GATE_WEBHOOK_ALLOWED_HOSTS).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from django.conf import settings

from approvals.integrations import webhooks
from approvals.notifications.notice import Notice

APPROVE, REJECT = "gate_approve", "gate_reject"
VERDICTS = {APPROVE: "approve", REJECT: "reject"}
SIGNATURE_MAX_AGE_SECONDS = 5 * 60
SECTION_MAX_CHARS = 3000  # Block Kit's limit of a section's text


class SlackError(Exception):
    """Slack (or the address guard) refused a request; ``retry`` tells whether trying again may help."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


# --- signatures of the requests Slack sends ------------------------------------------------------


def signature(secret: str, timestamp: str, body: bytes) -> str:
    basestring = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), basestring, hashlib.sha256).hexdigest()


def signature_refusal(secret: str, timestamp: str, given: str, body: bytes, *, now: float) -> str:
    """Why a request is not Slack's ("" when it is): no secret set, a bad or missing signature, a
    timestamp more than 5 minutes away from now (either way)."""
    if not secret:
        return "GATE_SLACK_SIGNING_SECRET is not set: Slack interactions are refused"
    try:
        sent_at = int(timestamp)
    except ValueError:
        return "missing or malformed X-Slack-Request-Timestamp"
    if abs(now - sent_at) > SIGNATURE_MAX_AGE_SECONDS:
        return "the request is more than 5 minutes old (or from the future)"
    if not hmac.compare_digest(signature(secret, timestamp, body), given):
        return "bad X-Slack-Signature"
    return ""


# --- messages ------------------------------------------------------------------------------------


def escape(text: str) -> str:
    """Slack's mrkdwn escapes: &, < and > (the rest is shown as written)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int = SECTION_MAX_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _summary_blocks(notice: Notice) -> list[dict[str, Any]]:
    head = f"*{escape(notice.action_type)}* proposed by *{escape(notice.agent)}* · risk *{notice.risk_text}*"
    failed = "\n".join(
        f"• `{escape(item.rule)}` ({item.outcome})" + (f": {escape(item.message)}" if item.message else "")
        for item in notice.failed
    )
    why = "*Why it was held*\n" + (failed or "• no failing check: the type is reviewed every time")
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip(head)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip(why)}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": _clip("*Params*\n```" + escape(notice.params_text) + "```")},
        },
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"<{notice.link}|Open on the review desk> · `{notice.action_id}`"}],
        },
    ]


def _buttons(notice: Notice) -> dict[str, Any]:
    return {
        "type": "actions",
        "block_id": f"gate_decide:{notice.action_id}",
        "elements": [
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Approve"},
                "style": "primary",
                "action_id": APPROVE,
                "value": notice.action_id,
            },
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Reject"},
                "style": "danger",
                "action_id": REJECT,
                "value": notice.action_id,
            },
        ],
    }


def outcome_text(notice: Notice, *, mention: str = "") -> str:
    """How the action stands, in mrkdwn, as the message says it once it changed ("" while simply
    held). ``mention``: who decided, as Slack shows them (``<@U…>``), else their name is shown."""
    who = mention or escape(str((notice.decision or {}).get("by") or "?"))
    if notice.status == "approved":
        return f"Approved by {who}"
    if notice.status == "rejected":
        return f"Rejected by {who}"
    if notice.status == "expired":
        return "Expired: nobody decided it in time"
    if notice.status == "cancelled":
        return "Cancelled by the agent"
    parts = []
    if notice.approvals:
        by = ", ".join(escape(str(item.get("by", "?"))) for item in notice.approvals)
        parts.append(f"Approved so far by {by}: more approvals needed")
    if notice.escalated:
        parts.append("Escalated: past its review deadline")
    return " · ".join(parts)


def action_message(notice: Notice, *, mention: str = "") -> dict[str, Any]:
    """The message of an action as it stands: with the buttons while it is held, without them (and
    saying how it ended) once it is not."""
    outcome = outcome_text(notice, mention=mention)
    fallback = f"{notice.action_type} by {notice.agent} (risk {notice.risk_text})"
    blocks = _summary_blocks(notice)
    if outcome:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*{outcome}*"}})
    if notice.held:
        blocks.append(_buttons(notice))
        text = f"Held for review: {fallback}" + (f". {outcome}" if outcome else "")
    else:
        text = f"{outcome}: {fallback}"
    return {"text": text, "blocks": blocks}


def ephemeral(text: str) -> dict[str, Any]:
    """A reply only the clicking user sees, leaving the message as it is."""
    return {"response_type": "ephemeral", "replace_original": False, "text": text}


# --- sending -------------------------------------------------------------------------------------


def _post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> webhooks.Response:
    data = json.dumps(body, separators=(",", ":")).encode()
    try:
        response = webhooks.post(url, data, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})
    except webhooks.WebhookRefused as exc:
        raise SlackError(str(exc), retry=False) from exc
    except Exception as exc:  # network errors: worth another try
        raise SlackError(f"{type(exc).__name__}: {exc}", retry=True) from exc
    if response.status_code == 429 or response.status_code >= 500:
        raise SlackError(f"HTTP {response.status_code} from {url}", retry=True)
    if not 200 <= response.status_code < 300:
        raise SlackError(f"HTTP {response.status_code} from {url}: {response.content[:200]!r}", retry=False)
    return response


def webhook_post(url: str, message: dict[str, Any]) -> None:
    """Post to an incoming webhook or a ``response_url`` (both answer 200 "ok")."""
    _post(url, message)


def api_call(method: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A Web API method with the bot token (``chat.postMessage``, ``chat.update``): its answer, or
    SlackError when it is not ``ok`` (Slack answers HTTP 200 with ``ok: false`` on errors)."""
    response = _post(
        f"{settings.GATE_SLACK_API_URL}/{method}",
        payload,
        {"Authorization": f"Bearer {settings.GATE_SLACK_BOT_TOKEN}"},
    )
    try:
        answer = json.loads(response.content or b"{}")
    except ValueError as exc:
        raise SlackError(f"{method}: not JSON", retry=True) from exc
    if not isinstance(answer, dict) or not answer.get("ok"):
        error = answer.get("error", "unknown") if isinstance(answer, dict) else "unknown"
        raise SlackError(f"{method}: {error}", retry=error in ("ratelimited", "internal_error", "fatal_error"))
    return answer
