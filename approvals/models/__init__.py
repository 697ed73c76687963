"""Data and constraints of the gate, one module per domain. Behaviour lives in the domain packages
(lifecycle, gate, review, evaluation, integrations, ops): their services change it, their selectors
read it. Everything is importable from here, as ``from approvals.models import ProposedAction``."""

from approvals.models.actions import Approval, Decision, Label, ProposedAction, RememberedApproval
from approvals.models.agents import Agent
from approvals.models.audit import AuditEvent
from approvals.models.choices import FINAL_STATUSES, LabelValue, Mode, OnFail, ShadowStatus, Status, Verdict
from approvals.models.evaluation import ShadowResult, WhatIfRun
from approvals.models.notifications import Notification, ReviewerProfile
from approvals.models.outbox import OutboxEvent, WebhookDelivery
from approvals.models.policies import ActionType, PolicyVersion, Rule, ShadowPolicy

__all__ = [
    "FINAL_STATUSES",
    "ActionType",
    "Agent",
    "Approval",
    "AuditEvent",
    "Decision",
    "Label",
    "LabelValue",
    "Mode",
    "Notification",
    "OnFail",
    "OutboxEvent",
    "PolicyVersion",
    "ProposedAction",
    "RememberedApproval",
    "ReviewerProfile",
    "Rule",
    "ShadowPolicy",
    "ShadowResult",
    "ShadowStatus",
    "Status",
    "Verdict",
    "WebhookDelivery",
    "WhatIfRun",
]
