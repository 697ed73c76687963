"""The append-only, hash-chained audit log."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils import timezone

from approvals.models.actions import ProposedAction


class AuditEvent(models.Model):
    """Append-only record of every state change: who, what, when, from -> to."""

    action = models.ForeignKey(  # indexed by audit_action_idx, which leads with it
        ProposedAction, null=True, blank=True, on_delete=models.PROTECT, related_name="audit_events", db_index=False
    )
    event = models.CharField(max_length=40)
    actor = models.CharField(max_length=200)
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, blank=True)
    data = models.JSONField(default=dict)
    # Set by audit_record before hashing (not auto_now_add, which would overwrite it on save).
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # Hash chain (approvals/audit_chain.py): one chain per action, "gate" for events without one;
    # hash = SHA-256(prev_hash, canonical content). A database trigger refuses UPDATE and DELETE.
    chain = models.CharField(max_length=64, editable=False)
    seq = models.PositiveBigIntegerField(editable=False)
    prev_hash = models.CharField(max_length=64, editable=False)
    hash = models.CharField(max_length=64, editable=False)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["action", "created_at"], name="audit_action_idx")]
        constraints = [models.UniqueConstraint(fields=["chain", "seq"], name="audit_chain_seq_uniq")]

    def __str__(self) -> str:
        return f"{self.event} by {self.actor}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:  # written once: an audit event is never saved again
            raise ValueError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError("audit events are append-only")
