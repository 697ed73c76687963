"""The policy store: action types, their rules, the gate-wide policy versions and the shadow policy."""

from __future__ import annotations

from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Q

from approvals.models.choices import Mode, OnFail


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
    # Who reviews the type's held actions (contract §6.3): the members of ``review_group`` (none: every
    # reviewer), and once an action is past its review SLA also those of ``escalation_group``.
    # PROTECT: deleting a group in use would hand its actions to every reviewer without a word.
    review_group = models.ForeignKey(
        Group, null=True, blank=True, on_delete=models.PROTECT, related_name="reviewed_action_types"
    )
    escalation_group = models.ForeignKey(
        Group, null=True, blank=True, on_delete=models.PROTECT, related_name="escalated_action_types"
    )
    # The two-person rule (contract §6.3): distinct reviewers' approvals a held action needs.
    approvals_required = models.PositiveSmallIntegerField(default=1)
    # Evidence the gate gathers itself (contract §6.1), as the policy file writes them.
    lookups = models.JSONField(default=list, blank=True)
    history = models.JSONField(default=list, blank=True)
    identity_params = models.JSONField(null=True, blank=True)
    # Example proposals and their expected decisions (contract §6.2), as the policy file writes them.
    tests = models.JSONField(default=list, blank=True)
    # Who is told of a held action (contract §6.3): these addresses by e-mail, and Slack when it is
    # set up (GATE_SLACK_WEBHOOK_URL or a bot token) unless notify_slack is off.
    notify_emails = models.JSONField(default=list, blank=True)
    notify_slack = models.BooleanField(default=True)
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
            models.CheckConstraint(
                condition=Q(approvals_required__gte=1) & Q(approvals_required__lte=5), name="approvals_required_1_5"
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


class ShadowPolicy(models.Model):
    """A candidate policy document evaluated beside the live policy on every proposal of the types it
    names, its decisions recorded and never acted on (contract §6.2). At most one is active; a new
    shadow import replaces it (the earlier one stays, inactive, with its results)."""

    # Counted apart from the gate-wide policy_version: a shadow is not a version of the live policy.
    version = models.PositiveIntegerField(unique=True)
    document = models.JSONField()
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    active = models.BooleanField(default=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # The live policy_version it became, when it was promoted.
    promoted_to = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["active"], condition=Q(active=True), name="one_active_shadow_policy")
        ]

    def __str__(self) -> str:
        return f"shadow v{self.version}"
