"""Agents: who proposes actions, with their tokens and webhook secret."""

from __future__ import annotations

from typing import Any

from django.db import models

from approvals.models.policies import ActionType


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
