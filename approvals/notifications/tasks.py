"""Celery entry points of notifications: each retries with exponential backoff while the failure may
pass (SMTP down, Slack answering 5xx or 429), and never touches the action it tells of."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from django.conf import settings

from approvals.notifications import services, slack


def _backoff(task: Task) -> int:
    return int(min(settings.GATE_NOTIFY_BACKOFF_SECONDS * 2**task.request.retries, 600))


@shared_task(bind=True, name="approvals.notifications.tasks.notify_held", acks_late=True, max_retries=None)
def notify_held(self: Task, action_id: str) -> dict[str, str]:
    """E-mail and Slack for a held action, once each; retried while one of them is still pending
    (its row counts the attempts and marks it failed when they run out)."""
    states = services.notification_deliver(action_id=action_id)
    if "pending" in states.values():
        raise self.retry(countdown=_backoff(self))
    return states


@shared_task(bind=True, name="approvals.notifications.tasks.slack_message_update", acks_late=True)
def slack_message_update(self: Task, action_id: str) -> str:
    """Show a later change (decided, expired, cancelled, escalated, ...) in the action's message."""
    try:
        return services.slack_message_update(action_id=action_id)
    except slack.SlackError as exc:
        if exc.retry and self.request.retries + 1 < settings.GATE_NOTIFY_MAX_ATTEMPTS:
            raise self.retry(countdown=_backoff(self)) from exc
        services.logger.warning("slack message of action %s not updated: %s", action_id, exc)
        return f"failed: {exc}"


@shared_task(bind=True, name="approvals.notifications.tasks.slack_respond", acks_late=True)
def slack_respond(self: Task, response_url: str, message: dict[str, Any]) -> str:
    """Answer a click through its ``response_url`` (an ephemeral refusal, or the settled message)."""
    try:
        slack.webhook_post(response_url, message)
    except slack.SlackError as exc:
        if exc.retry and self.request.retries + 1 < settings.GATE_NOTIFY_MAX_ATTEMPTS:
            raise self.retry(countdown=_backoff(self)) from exc
        services.logger.warning("could not answer a slack click: %s", exc)
        return f"failed: {exc}"
    return "sent"
