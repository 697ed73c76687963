"""The evaluation room's own records: what-if runs."""

from __future__ import annotations

from django.conf import settings
from django.db import models


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
