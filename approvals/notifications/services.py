"""Sending notifications of held actions and updating them, and applying Slack clicks as reviewers'
decisions. Nothing here changes an action but ``action_decide`` (approvals.review.services); a
notification that fails is retried and recorded on its row, never affecting the decision."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.core.cache import cache
from django.db.models import F, Q
from django.utils import timezone

from approvals.errors import ServiceError
from approvals.gate import selectors as gate_selectors
from approvals.models import Notification, ProposedAction, Status
from approvals.notifications import email, selectors, slack
from approvals.notifications.notice import Notice, notice_of
from approvals.review.services import action_decide

logger = logging.getLogger(__name__)

REVIEW_PERMISSION = "approvals.review_action"
LEASE = timedelta(seconds=60)
# Slack lets a response_url be used for 30 minutes (and 5 times) after the click that sent it.
RESPONSE_URL_VALID = timedelta(minutes=30)
REPLAY_KEY = "gate:slack:signature:"
# Changes after which a posted message shows nothing new: the others (decided, expired, cancelled,
# escalated, a partial approval, ...) update it.
UNCHANGING_EVENTS = frozenset({"evaluated", "claimed", "labelled", "outcome_reported"})


# --- after a change commits (called by the outbox's fan-out) ------------------------------------


def notifications_fan_out(*, action_id: str, event: str, payload: dict[str, Any]) -> None:
    """Queue what a committed change asks of notifications: telling people of a hold (the
    evaluation said so in ``payload["notify"]``), or updating the Slack message of one. Repeatable:
    the tasks send each notification once."""
    from approvals.notifications import tasks

    if payload.get("notify"):
        tasks.notify_held.delay(action_id)
    elif event not in UNCHANGING_EVENTS and selectors.notified_on_slack(action_id):
        tasks.slack_message_update.delay(action_id)


# --- telling people of a held action -------------------------------------------------------------


def _lease(row: Notification) -> bool:
    """Take the row for sending (a guarded UPDATE: of two tasks, one takes it)."""
    now = timezone.now()
    taken = Notification.objects.filter(
        Q(leased_until__isnull=True) | Q(leased_until__lt=now), pk=row.pk, state=Notification.State.PENDING
    ).update(leased_until=now + LEASE, attempts=F("attempts") + 1)
    row.attempts += 1
    return taken == 1


def _settle(row: Notification, *, error: str = "", retry: bool = True, state: str | None = None, **done: Any) -> str:
    """Record how an attempt went: sent, pending again (to retry while attempts remain), failed, or
    ``state`` as given."""
    if state is None:
        if not error:
            state = Notification.State.SENT
        elif retry and row.attempts < settings.GATE_NOTIFY_MAX_ATTEMPTS:
            state = Notification.State.PENDING
        else:
            state = Notification.State.FAILED
    Notification.objects.filter(pk=row.pk).update(
        state=state,
        leased_until=None,
        last_error=error[:2000],
        sent_at=timezone.now() if state == Notification.State.SENT else None,
        **done,
    )
    if error:
        log = logger.warning if state == Notification.State.FAILED else logger.info
        log("%s notification of action %s: %s (%s)", row.channel, row.action_id, error, state)
    return str(state)


def _digest(message: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(message, sort_keys=True).encode()).hexdigest()


def _send_email(row: Notification, notice: Notice, recipients: list[str]) -> str:
    try:
        email.held_email_send(notice, recipients)
    except Exception as exc:  # SMTP down, refused, timed out: retried
        return _settle(row, error=f"{type(exc).__name__}: {exc}")
    return _settle(row)


def _send_slack(row: Notification, notice: Notice) -> str:
    message = slack.action_message(notice)
    done: dict[str, Any] = {"shown_digest": _digest(message)}
    try:
        if selectors.slack_mode() == selectors.BOT:
            answer = slack.api_call("chat.postMessage", {"channel": settings.GATE_SLACK_CHANNEL, **message})
            done.update(slack_channel=str(answer.get("channel", "")), slack_ts=str(answer.get("ts", "")))
        else:
            slack.webhook_post(settings.GATE_SLACK_WEBHOOK_URL, message)
    except slack.SlackError as exc:
        return _settle(row, error=str(exc), retry=exc.retry)
    return _settle(row, **done)


def notification_deliver(*, action_id: str) -> dict[str, str]:
    """Tell the people a held action's type names, once per channel; returns each channel's state
    (``pending``: to try again later). Safe to run twice, or twice at once."""
    action = ProposedAction.objects.select_related("action_type").filter(pk=action_id).first()
    if action is None:
        return {}
    channels = selectors.notification_channels(action.action_type)
    Notification.objects.bulk_create(
        [Notification(action_id=action.pk, channel=channel) for channel in channels], ignore_conflicts=True
    )
    states: dict[str, str] = {}
    notice: Notice | None = None
    for row in Notification.objects.filter(action_id=action.pk, channel__in=channels):
        states[row.channel] = row.state
        if row.state != Notification.State.PENDING or not _lease(row):
            continue
        notice = notice or notice_of(str(action.pk))
        if not notice.held:
            states[row.channel] = _settle(row, state=Notification.State.SKIPPED)
            continue
        if row.channel == Notification.Channel.EMAIL:
            states[row.channel] = _send_email(row, notice, list(action.action_type.notify_emails))
        else:
            states[row.channel] = _send_slack(row, notice)
            sent = states[row.channel] == Notification.State.SENT
            if sent and gate_selectors.action_status(action.pk) != Status.NEEDS_REVIEW:
                # Settled while the message was on its way (the change's own update found no
                # message yet): show how.
                from approvals.notifications.tasks import slack_message_update

                slack_message_update.delay(str(action.pk))
    return states


# --- updating a posted Slack message -------------------------------------------------------------


def _mention(notice: Notice) -> str:
    """Who decided, as Slack shows a person: their Slack user when their profile records one."""
    by = (notice.decision or {}).get("by")
    if not by or by == "policy":
        return ""
    slack_user = selectors.slack_user_of(str(by))
    return f"<@{slack_user}>" if slack_user else "@" + slack.escape(str(by))


def slack_message_update(*, action_id: str) -> str:
    """Show the action as it stands now in its Slack message: ``chat.update`` in bot-token mode,
    else through the latest ``response_url`` a click sent (while Slack still accepts it). Returns
    what it did; raises SlackError when trying again may help."""
    row = selectors.notification_of(action_id, Notification.Channel.SLACK)
    if row is None or row.state != Notification.State.SENT:
        return "not posted"
    notice = notice_of(action_id)
    message = slack.action_message(notice, mention=_mention(notice))
    digest = _digest(message)
    if digest == row.shown_digest:
        return "unchanged"
    if row.slack_ts and settings.GATE_SLACK_BOT_TOKEN:
        slack.api_call("chat.update", {"channel": row.slack_channel, "ts": row.slack_ts, **message})
        how = "chat.update"
    elif row.response_url and row.response_url_at and timezone.now() - row.response_url_at < RESPONSE_URL_VALID:
        slack.webhook_post(row.response_url, {"replace_original": True, **message})
        how = "response_url"
    else:
        # An incoming webhook's message cannot be edited: only a click's response_url, or a bot
        # token, can change it.
        logger.info("slack message of action %s cannot be updated (no bot token, no fresh response_url)", action_id)
        return "no way to update"
    Notification.objects.filter(pk=row.pk).update(shown_digest=digest, updated_at=timezone.now())
    return how


# --- clicks on the buttons -----------------------------------------------------------------------


@dataclass(frozen=True)
class Interaction:
    """What the interactions endpoint answers: an HTTP status and, when refused, why."""

    status: int
    error: str = ""


def _respond(response_url: str, message: dict[str, Any]) -> None:
    from approvals.notifications.tasks import slack_respond

    if response_url:
        slack_respond.delay(response_url, message)


def _remember_signature(signature: str) -> bool:
    """False when this signature was seen in the last 5 minutes (a replay). In the cache: Redis,
    shared by every web process, once deployed."""
    return bool(cache.add(REPLAY_KEY + signature, 1, timeout=slack.SIGNATURE_MAX_AGE_SECONDS + 60))


def _payload(body: bytes) -> dict[str, Any] | None:
    try:
        values = parse_qs(body.decode(), strict_parsing=False).get("payload")
        payload = json.loads(values[0]) if values else None
    except (UnicodeDecodeError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def slack_interaction_apply(*, body: bytes, timestamp: str, signature: str, now: float) -> Interaction:
    """A click that Slack sent (contract §6.3): checked against the signing secret, at most 5
    minutes old and never seen before, then applied as the decision of the reviewer whose profile
    records the clicking Slack user. Anyone else is told why (an ephemeral reply) and nothing
    changes."""
    refusal = slack.signature_refusal(settings.GATE_SLACK_SIGNING_SECRET, timestamp, signature, body, now=now)
    if refusal:
        return Interaction(401, refusal)
    if not _remember_signature(signature):
        return Interaction(403, "this request was already received (a replay)")
    payload = _payload(body)
    if payload is None:
        return Interaction(400, "the body must be form-encoded with a JSON object in 'payload'")
    if payload.get("type") != "block_actions":
        return Interaction(200)  # another kind of interaction: nothing of ours
    clicked = next(
        (a for a in payload.get("actions") or [] if isinstance(a, dict) and a.get("action_id") in slack.VERDICTS),
        None,
    )
    if clicked is None:
        return Interaction(200)
    response_url = str(payload.get("response_url") or "")
    slack_user = str((payload.get("user") or {}).get("id") or "")
    try:
        action_id = str(uuid.UUID(str(clicked.get("value"))))
    except ValueError:
        return Interaction(400, "the button's value is not an action id")
    user = selectors.reviewer_for_slack_user(slack_user)
    if user is None:
        _respond(
            response_url,
            slack.ephemeral(
                f"Your Slack user ({slack_user or 'unknown'}) is not linked to a reviewer of the gate: nothing was "
                "decided. An admin can record your Slack member ID on your user's page."
            ),
        )
        logger.warning("slack click on action %s by unmapped user %s refused", action_id, slack_user)
        return Interaction(200)
    if not user.has_perm(REVIEW_PERMISSION):
        _respond(response_url, slack.ephemeral(f"{user.get_username()} may not decide actions: nothing was decided."))
        logger.warning("slack click on action %s by %s (not a reviewer) refused", action_id, user.get_username())
        return Interaction(200)
    verdict = slack.VERDICTS[str(clicked["action_id"])]
    # Before the decision: its update (queued when it commits) replaces the message through it.
    stored = bool(response_url) and bool(
        Notification.objects.filter(
            action__pk=action_id, channel=Notification.Channel.SLACK, state=Notification.State.SENT
        ).update(response_url=response_url[:2000], response_url_at=timezone.now())
    )
    try:
        action_decide(action_id=action_id, user=user, verdict=verdict, reason="")
    except (ServiceError, ProposedAction.DoesNotExist) as exc:
        message = getattr(exc, "message", "") or "no such action"
        _respond(response_url, slack.ephemeral(f"Not {verdict.removesuffix('e')}ed: {message}. Nothing changed."))
        return Interaction(200)
    logger.info("slack click: action %s decided (%s) by %s", action_id, verdict, user.get_username())
    if not stored:
        # A message the gate has no row of: answer the click itself.
        notice = notice_of(action_id)
        _respond(response_url, {"replace_original": True, **slack.action_message(notice, mention=_mention(notice))})
    return Interaction(200)
