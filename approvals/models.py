"""Data and constraints of the gate. Behaviour lives in the domain packages (lifecycle, gate, review,
evaluation, integrations, ops): their services change it, their selectors read it."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.fields.json import KT
from django.utils import timezone


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


class ActionType(models.Model):
    """A kind of tool call and the policy that gates it (contract §5)."""

    name = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    params_schema = models.JSONField(default=dict)
    enabled = models.BooleanField(default=True)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.GATE)
    base_risk = models.FloatField(default=0.0)
    auto_approve_max_risk = models.FloatField(default=0.5)
    block_min_risk = models.FloatField(null=True, blank=True)
    min_confidence = models.FloatField(null=True, blank=True)
    amount_path = models.CharField(max_length=200, blank=True)
    max_auto_amount = models.FloatField(null=True, blank=True)
    audit_sample_rate = models.FloatField(default=0.0)
    builtin_checks = models.BooleanField(default=True)
    review_sla_minutes = models.PositiveIntegerField(null=True, blank=True)
    expire_after_minutes = models.PositiveIntegerField(null=True, blank=True)
    # Evidence the gate gathers itself (contract §6.1), as the policy file writes them.
    lookups = models.JSONField(default=list, blank=True)
    history = models.JSONField(default=list, blank=True)
    identity_params = models.JSONField(null=True, blank=True)
    # Example proposals and their expected decisions (contract §6.2), as the policy file writes them.
    tests = models.JSONField(default=list, blank=True)
    # The gate-wide policy version at which this type's policy was last set.
    policy_version = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(base_risk__gte=0) & Q(base_risk__lte=1), name="base_risk_0_1"),
            models.CheckConstraint(
                condition=Q(audit_sample_rate__gte=0) & Q(audit_sample_rate__lte=1), name="audit_rate_0_1"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Rule(models.Model):
    """A CEL expression that must hold for an action of its type (contract §5, Rules)."""

    action_type = models.ForeignKey(ActionType, on_delete=models.CASCADE, related_name="rules")
    name = models.SlugField(max_length=100)
    require = models.TextField(help_text="CEL expression that must be true")
    on_fail = models.CharField(max_length=10, choices=OnFail.choices, default=OnFail.REVIEW)
    risk = models.FloatField(default=0.0)
    message = models.CharField(max_length=500, blank=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["action_type", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["action_type", "name"], name="unique_rule_name_per_type")]

    def __str__(self) -> str:
        return f"{self.action_type.name}.{self.name}"


class PolicyVersion(models.Model):
    """One gate-wide policy version: the full policy document as it stood after a change."""

    number = models.PositiveIntegerField(unique=True)
    source = models.CharField(max_length=20)  # import | admin | seed | recommendation
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    document = models.JSONField()

    class Meta:
        ordering = ["-number"]

    def __str__(self) -> str:
        return f"v{self.number}"


class Agent(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    # SHA-256 of the bearer token; the token itself is shown once and never stored. NULL once revoked.
    token_hash = models.CharField(max_length=64, unique=True, null=True, blank=True)
    token_prefix = models.CharField(max_length=12, blank=True)
    # The token before the last rotation works until previous_token_expires_at: no downtime on rotation.
    previous_token_hash = models.CharField(max_length=64, unique=True, null=True, blank=True)
    previous_token_expires_at = models.DateTimeField(null=True, blank=True)
    token_rotated_at = models.DateTimeField(null=True, blank=True)
    token_revoked_at = models.DateTimeField(null=True, blank=True)
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Requests per minute for this agent (0: unlimited); empty: the gate's default "
        "(GATE_AGENT_RATE_PER_MINUTE)",
    )
    webhook_secret = models.CharField(max_length=100)
    enabled = models.BooleanField(default=True)
    all_action_types = models.BooleanField(
        default=True, help_text="May propose every action type, those created later included"
    )
    action_types = models.ManyToManyField(ActionType, blank=True, related_name="agents")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    # DRF treats request.user as a principal: an agent is authenticated but never a Django user.
    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return False


class ProposedAction(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No single-column indexes on these two: action_agent_idx and action_type_status_idx lead with
    # them. Every index is written by each proposal and again by each decision (status changes).
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="actions", db_index=False)
    action_type = models.ForeignKey(ActionType, on_delete=models.PROTECT, related_name="actions", db_index=False)
    params = models.JSONField()
    trajectory_raw = models.JSONField(null=True, blank=True)
    trajectory = models.JSONField(default=list)
    context = models.JSONField(default=dict)
    confidence = models.FloatField(null=True, blank=True)
    rationale = models.TextField(blank=True)
    # NULL, not "", means "no key": the unique constraint covers only actions that have one.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    request_fingerprint = models.CharField(max_length=64)
    callback_url = models.URLField(max_length=2000, blank=True)

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    risk_score = models.FloatField(null=True, blank=True)
    findings = models.JSONField(default=list)
    policy_version = models.PositiveIntegerField(null=True, blank=True)
    audit_flagged = models.BooleanField(default=False)
    escalated = models.BooleanField(default=False)
    sla_deadline = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    evaluation_attempts = models.PositiveIntegerField(default=0)
    # For evaluation (issue: labels -> thresholds), written when the action is proposed, evaluated
    # or labelled, so that figures and threshold sweeps aggregate columns, not JSON:
    # sha256 of the canonical params (repeated identical proposals),
    params_hash = models.CharField(max_length=64, blank=True, db_index=False)
    # the number at the type's amount_path when evaluated (finite), else NULL,
    amount = models.FloatField(null=True, blank=True)
    # steps 1-4 of the decision procedure neither blocked nor held it: thresholds (5-6) decided,
    reached_thresholds = models.BooleanField(default=False)
    # and the ground truth: the latest explicit label, else a reviewer's approve (safe) or reject.
    ground_truth = models.CharField(max_length=10, choices=LabelValue.choices, null=True, blank=True)  # noqa: DJ001
    # What the gate saw itself when it evaluated the action (contract §6.1): each lookup's URL,
    # answer and timing, and each history aggregate's value.
    evidence = models.JSONField(default=dict, blank=True)
    # The reviewer's remembered approval that let this action through, if one did.
    remembered_approval = models.ForeignKey(
        "RememberedApproval",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="applied_to",
        db_index=False,  # action_remembered_idx: only the rows that have one
    )
    # What the agent reported when it acted (contract §2 outcome), once.
    outcome_executed = models.BooleanField(null=True, blank=True)
    outcome_result = models.JSONField(null=True, blank=True)
    outcome_error = models.TextField(blank=True)
    outcome_at = models.DateTimeField(null=True, blank=True)
    # An advisory claim from the review UI: who has the item open, until when. Never blocks a decision.
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,  # action_claimed_idx: only the rows that have one
    )
    claimed_until = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    evaluated_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("review_action", "Can review and decide proposed actions")]
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="unique_idempotency_key_per_agent",
            ),
            models.CheckConstraint(condition=Q(status__in=Status.values), name="status_is_known"),
        ]
        indexes = [
            # The review queue: escalated first, then SLA deadline, then risk.
            # Its column order and NULLS placement match review_queue(), so that a page of
            # the queue is an index scan, however long the queue.
            models.Index(
                F("escalated").desc(),
                F("sla_deadline").asc(nulls_last=True),
                F("risk_score").desc(nulls_last=True),
                F("created_at").asc(),
                condition=Q(status=Status.NEEDS_REVIEW),
                name="action_queue_idx",
            ),
            models.Index(fields=["-decided_at"], condition=Q(decided_at__isnull=False), name="action_decided_idx"),
            models.Index(fields=["-created_at"], condition=Q(audit_flagged=True), name="action_audit_idx"),
            models.Index(fields=["agent", "-created_at"], name="action_agent_idx"),
            models.Index(fields=["action_type", "status"], name="action_type_status_idx"),
            models.Index(fields=["claimed_by"], condition=Q(claimed_by__isnull=False), name="action_claimed_idx"),
            models.Index(
                fields=["remembered_approval"],
                condition=Q(remembered_approval__isnull=False),
                name="action_remembered_idx",
            ),
            models.Index(fields=["created_at"], condition=Q(status=Status.PENDING), name="action_pending_idx"),
            # Threshold sweeps: an index-only scan over a type's labelled history.
            models.Index(
                fields=["action_type", "risk_score", "amount", "confidence", "ground_truth"],
                condition=Q(ground_truth__isnull=False),
                name="action_labelled_idx",
            ),
            # repeat_of_executed (contract §6.1): an agent's approved actions of a type, by params or
            # by session. (History aggregates match params through a GIN index on PostgreSQL, made in
            # migration 0013: the model's indexes must work on SQLite too.)
            models.Index(
                fields=["agent", "action_type", "params_hash"],
                condition=Q(status__in=[Status.APPROVED, Status.AUTO_APPROVED]),
                name="action_done_idx",
            ),
            # The session leads: the evaluation's load, which has no session condition the index can
            # use, must not take this index for action_done_idx's (agent, type) prefix.
            models.Index(
                KT("context__session_id"),
                F("agent"),
                F("action_type"),
                condition=Q(status__in=[Status.APPROVED, Status.AUTO_APPROVED]),
                name="action_done_session_idx",
            ),
            # History aggregates (contract §6.1): a type's actions in a time window.
            models.Index(fields=["action_type", "-created_at"], name="action_type_recent_idx"),
            # The built-in check for repeats of refused proposals: equal params are equal hashes.
            models.Index(
                fields=["agent", "action_type", "params_hash", "-created_at"],
                condition=Q(status__in=[Status.REJECTED, Status.BLOCKED]),
                name="action_refused_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action_type_id}:{self.id}"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


class RememberedApproval(models.Model):
    """A reviewer's approve, extended to similar later proposals of the same agent session.

    Similar: same agent, type and ``context.session_id``, proposed before ``expires_at``, failing
    only checks that the approved action failed too (``failed``), and nothing that blocks.
    """

    source_action = models.ForeignKey(ProposedAction, on_delete=models.PROTECT, related_name="remembered_approvals")
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="+")
    action_type = models.ForeignKey(ActionType, on_delete=models.PROTECT, related_name="+")
    session_id = models.CharField(max_length=255)
    failed = models.JSONField(default=list)  # names of the checks the approved action did not pass
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Why it stopped without a reviewer revoking it: it lapsed (contract §6.1) when an action it
    # covered, or the one it came from, was reported as not executed.
    lapsed_reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["agent", "action_type", "session_id", "-expires_at"], name="remembered_idx")]

    def __str__(self) -> str:
        return f"remembered approval {self.pk} ({self.session_id})"


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


class Decision(models.Model):
    """The one verdict an action gets, by the policy or by a reviewer."""

    action = models.OneToOneField(ProposedAction, on_delete=models.CASCADE, related_name="decision")
    verdict = models.CharField(max_length=10, choices=Verdict.choices)
    by_policy = models.BooleanField(default=False)
    # NULL for the policy's decisions (most of them): indexed only where a person decided.
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, db_index=False
    )
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["reviewer"], condition=Q(reviewer__isnull=False), name="decision_reviewer_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.verdict} by {self.by}"

    @property
    def by(self) -> str:
        if self.by_policy or self.reviewer is None:
            return "policy"
        return self.reviewer.get_username()


class Label(models.Model):
    """Ground truth from a person; the latest one of an action wins, history is kept."""

    action = models.ForeignKey(ProposedAction, on_delete=models.CASCADE, related_name="labels")
    label = models.CharField(max_length=10, choices=LabelValue.choices)
    tags = models.JSONField(default=list)
    note = models.TextField(blank=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["action", "-created_at"], name="label_action_idx")]

    def __str__(self) -> str:
        return f"{self.label} ({self.action_id})"


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
