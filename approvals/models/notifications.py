"""Notifications of held actions (contract §6.3): one row per action and channel, so that a repeated
fan-out never sends twice, and the reviewers' profiles that map a Slack user to a person."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from approvals.models.actions import ProposedAction


class Notification(models.Model):
    """A held action told to people on one channel (approvals.notifications): e-mail to the type's
    ``notify_emails``, or a Slack message. Sent at most once; retried with backoff while it fails."""

    class Channel(models.TextChoices):
        EMAIL = "email", "E-mail"
        SLACK = "slack", "Slack"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"  # retries exhausted, or refused (a private address)
        SKIPPED = "skipped", "Skipped"  # no longer held when its turn came: nobody needs telling

    action = models.ForeignKey(ProposedAction, on_delete=models.CASCADE, related_name="notifications", db_index=False)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # A sender holds the row until then (a lease, not a transaction held over the network): a second
    # task for the same row leaves it alone; one that died lets it go when the lease ends.
    leased_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # Slack: where the message is, to update it with the outcome. Bot-token mode: the channel and ts
    # chat.postMessage answered; webhook mode: the latest response_url of a click on it (Slack lets
    # it be used for 30 minutes).
    slack_channel = models.CharField(max_length=40, blank=True)
    slack_ts = models.CharField(max_length=40, blank=True)
    response_url = models.CharField(max_length=2000, blank=True)
    response_url_at = models.DateTimeField(null=True, blank=True)
    # A digest of the message as last sent, so that an update that changes nothing is not sent.
    shown_digest = models.CharField(max_length=64, blank=True)
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["action", "channel"], name="one_notification_per_channel")]
        indexes = [models.Index(fields=["-created_at"], condition=Q(state="failed"), name="notification_failed_idx")]

    def __str__(self) -> str:
        return f"{self.channel} of {self.action_id} ({self.state})"


class ReviewerProfile(models.Model):
    """What the gate knows of a reviewer beyond Django's user: the Slack user id whose button clicks
    are this reviewer's decisions (set in the admin, on the user's page)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reviewer_profile")
    slack_user_id = models.CharField(
        max_length=32,
        blank=True,
        help_text="The member ID in Slack (profile → ⋮ → Copy member ID), e.g. U024BE7LH.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["slack_user_id"],
                condition=~Q(slack_user_id=""),
                name="unique_slack_user_id",
                violation_error_message="This Slack user id is recorded for another reviewer already.",
            )
        ]

    def __str__(self) -> str:
        return f"profile of {self.user}"
