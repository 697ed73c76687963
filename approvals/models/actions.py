"""Proposed actions and what people and the policy said of them: decisions, labels, remembered
approvals."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.fields.json import KT

from approvals.models.agents import Agent
from approvals.models.choices import FINAL_STATUSES, LabelValue, Status, Verdict
from approvals.models.policies import ActionType


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
    # The hash of the params the agent says it executed (contract §6.3), and whether it differs from
    # the approved hash (NULL: the report carried no hash).
    outcome_params_hash = models.CharField(max_length=64, blank=True)
    params_mismatch = models.BooleanField(null=True, blank=True)
    # Reviewers' edit (contract §6.3): the params under approval when a reviewer changed them (NULL:
    # not edited), and the hash of the params under approval (the proposed ones' when not edited).
    # Set by the first approval; cleared by a rejection.
    approved_params = models.JSONField(null=True, blank=True)
    approved_params_hash = models.CharField(max_length=64, blank=True)
    # The two-person rule: how many distinct reviewers must approve, fixed when the action is held
    # (a policy change mid-review never lets fewer people approve it), and how many have so far.
    approvals_required = models.PositiveSmallIntegerField(default=1)
    approvals_count = models.PositiveSmallIntegerField(default=0)
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
            models.CheckConstraint(
                condition=Q(approvals_count__lte=F("approvals_required")), name="approvals_within_required"
            ),
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


class Approval(models.Model):
    """One reviewer's approval of a held action; the action is approved once it has
    ``approvals_required`` of them, by distinct reviewers (contract §6.3)."""

    action = models.ForeignKey(ProposedAction, on_delete=models.CASCADE, related_name="approvals")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    at = models.DateTimeField()
    # The params this approval approves (the proposed ones' hash when not edited).
    params_hash = models.CharField(max_length=64)
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]
        constraints = [models.UniqueConstraint(fields=["action", "reviewer"], name="one_approval_per_reviewer")]

    def __str__(self) -> str:
        return f"approval of {self.action_id} by {self.reviewer_id}"


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
