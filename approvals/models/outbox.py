"""What is announced after a change commits: the outbox and the webhook deliveries."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from approvals.models.actions import ProposedAction


class WebhookDelivery(models.Model):
    """One signed POST of an action's representation to its callback_url (contract §4)."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"  # retries exhausted or refused (e.g. a private address)

    action = models.ForeignKey(ProposedAction, on_delete=models.PROTECT, related_name="webhook_deliveries")
    event = models.CharField(max_length=40)  # action.evaluated | action.decided | action.escalated | action.expired
    url = models.URLField(max_length=2000)
    body = models.TextField()  # the exact bytes signed and sent (UTF-8 JSON)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["-created_at"], condition=Q(state="failed"), name="webhook_failed_idx"),
            models.Index(fields=["created_at"], condition=Q(state="pending"), name="webhook_pending_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event} -> {self.url} ({self.state})"


class OutboxEvent(models.Model):
    """A change of an action to announce, written in the transaction that made it (the transactional
    outbox): approvals.lifecycle.outbox fans it out after the commit, and its sweep again for rows a
    crash left behind, to waiting API requests (Redis pub/sub), review pages (the Channels layer),
    webhook deliveries and metrics. Each of those is safe to do twice."""

    action = models.ForeignKey(ProposedAction, on_delete=models.CASCADE, related_name="+", db_index=False)
    event = models.CharField(max_length=40)  # the audit event: evaluated, decided, escalated, ...
    status = models.CharField(max_length=20)  # the action's status once the change committed
    # What the fan-out needs besides: the webhook delivery to queue, the push's extra fields, and
    # what the metrics record (evaluation duration, a reviewer's verdict).
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)
    dispatched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            # The sweep's look-up: only rows not yet dispatched, oldest first.
            models.Index(fields=["created_at"], condition=Q(dispatched_at__isnull=True), name="outbox_pending_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event} of {self.action_id} ({'dispatched' if self.dispatched_at else 'pending'})"
