"""The evaluation room's own records: what-if runs and the shadow policy's decisions."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from approvals.models.actions import ProposedAction
from approvals.models.choices import ShadowStatus
from approvals.models.policies import ShadowPolicy


class WhatIfRun(models.Model):
    """A candidate policy replayed over the labelled history, on Celery, before it goes live."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    document = models.JSONField()  # the candidate policy document (contract §5)
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"what-if {self.pk} ({self.state})"

    @property
    def progress(self) -> float:
        return round(self.processed / self.total, 4) if self.total else (1.0 if self.state == "done" else 0.0)


class ShadowResult(models.Model):
    """What the shadow policy decided for one action, beside what the live policy decided for it."""

    # Led by the unique constraint below (the figures filter by the shadow policy).
    shadow_policy = models.ForeignKey(ShadowPolicy, on_delete=models.PROTECT, related_name="results", db_index=False)
    action = models.ForeignKey(ProposedAction, on_delete=models.CASCADE, related_name="shadow_results")
    shadow_policy_version = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=ShadowStatus.choices)
    # The live policy's decision for the same proposal, whatever a reviewer did after.
    live_status = models.CharField(max_length=20)
    risk_score = models.FloatField(null=True, blank=True)
    failed = models.JSONField(default=list)  # the names of the checks the shadow did not pass
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["shadow_policy", "action"], name="shadow_result_once_per_action"),
            models.CheckConstraint(condition=Q(status__in=ShadowStatus.values), name="shadow_status_is_known"),
        ]

    def __str__(self) -> str:
        return f"shadow v{self.shadow_policy_version}: {self.status} ({self.action_id})"
