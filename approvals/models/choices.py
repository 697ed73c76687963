"""The enumerations of the gate's data: statuses, modes, verdicts, labels."""

from __future__ import annotations

from django.db import models


class Status(models.TextChoices):
    PENDING = "pending", "Pending"
    NEEDS_REVIEW = "needs_review", "Needs review"
    AUTO_APPROVED = "auto_approved", "Auto-approved"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    BLOCKED = "blocked", "Blocked"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"


FINAL_STATUSES = frozenset(
    {Status.AUTO_APPROVED, Status.APPROVED, Status.REJECTED, Status.BLOCKED, Status.EXPIRED, Status.CANCELLED}
)


class Mode(models.TextChoices):
    GATE = "gate", "Gate (policy decides)"
    REVIEW = "review", "Review (always a human)"
    BLOCK = "block", "Block (never)"


class OnFail(models.TextChoices):
    REVIEW = "review", "Hold for review"
    BLOCK = "block", "Block"
    RISK = "risk", "Add risk"


class Verdict(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"


class LabelValue(models.TextChoices):
    SAFE = "safe", "Safe"
    UNSAFE = "unsafe", "Unsafe"


class ShadowStatus(models.TextChoices):
    """What a shadow policy decided (contract §6.2): a decision, or the fault that stopped it."""

    AUTO_APPROVED = "auto_approved", "Auto-approved"
    NEEDS_REVIEW = "needs_review", "Needs review"
    BLOCKED = "blocked", "Blocked"
    ERROR = "error", "Error"  # the shadow's evaluation failed; the live decision stood
