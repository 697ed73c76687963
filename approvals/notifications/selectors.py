"""What notifications read: whether a type's held actions are told to anyone (from settings and the
type already loaded: no query), the notification rows, the reviewer a Slack user is."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Count

from approvals.models import ActionType, Notification, ReviewerProfile

BOT, WEBHOOK = "bot", "webhook"


def slack_mode() -> str:
    """``bot`` (a bot token and a channel: chat.postMessage, and chat.update for every later
    change), ``webhook`` (an incoming webhook URL), or "" when Slack is not set up."""
    if settings.GATE_SLACK_BOT_TOKEN and settings.GATE_SLACK_CHANNEL:
        return BOT
    if settings.GATE_SLACK_WEBHOOK_URL:
        return WEBHOOK
    return ""


def notification_channels(action_type: ActionType) -> list[str]:
    """The channels a held action of ``action_type`` is told on."""
    channels: list[str] = []
    if action_type.notify_emails:
        channels.append(Notification.Channel.EMAIL)
    if action_type.notify_slack and slack_mode():
        channels.append(Notification.Channel.SLACK)
    return channels


def notifications_wanted(action_type: ActionType) -> bool:
    """Whether a held action of ``action_type`` is told to anyone; reads nothing but the type."""
    return bool(notification_channels(action_type))


def notified_on_slack(action_id: str) -> bool:
    """Whether a Slack message of the action was posted (so a later change updates it); only asked
    when Slack is set up, of the changes that follow a hold."""
    return (
        bool(slack_mode())
        and Notification.objects.filter(
            action__pk=action_id, channel=Notification.Channel.SLACK, state=Notification.State.SENT
        ).exists()
    )


def notification_of(action_id: str, channel: str) -> Notification | None:
    return Notification.objects.filter(action__pk=action_id, channel=channel).first()


def reviewer_for_slack_user(slack_user_id: str) -> User | None:
    """The active user whose reviewer profile records ``slack_user_id``, or None."""
    if not slack_user_id:
        return None
    profile = (
        ReviewerProfile.objects.select_related("user").filter(slack_user_id=slack_user_id, user__is_active=True).first()
    )
    return profile.user if profile else None


def slack_user_of(username: str) -> str:
    """The Slack user id of the reviewer ``username`` ("" when none is recorded)."""
    found = ReviewerProfile.objects.filter(user__username=username).values_list("slack_user_id", flat=True).first()
    return found or ""


def notification_counts() -> list[dict[str, Any]]:
    """Notification rows by channel and state (the /metrics gauge)."""
    return list(Notification.objects.values("channel", "state").annotate(count=Count("id")).order_by())
