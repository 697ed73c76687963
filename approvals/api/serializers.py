"""Input serializers (parse and validate), and serializers that document the representations of
approvals.gate.representation for the OpenAPI schema."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from approvals import policy
from approvals.gate.representation import action_representation, remembered_approval_representation
from approvals.integrations import webhooks
from approvals.models import ActionType, LabelValue, ProposedAction, RememberedApproval, Status, Verdict

MAX_KEY_LENGTH = 255
MAX_TOOL_NAME_LENGTH = 200


def storable_moment(moment: datetime, name: str) -> datetime:
    """A query's date-time as PostgreSQL can compare it: aware and in UTC. Python accepts offsets
    up to ±23:59 that PostgreSQL refuses (±15:59), and a moment near year 1 or 9999 may not
    survive the conversion: both are a client's mistake (400), not a server error."""
    try:
        aware = timezone.make_aware(moment) if timezone.is_naive(moment) else moment
        return aware.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise serializers.ValidationError({name: [f"Out of range: {exc}."]}) from exc


@extend_schema_field({"type": "object", "additionalProperties": True})
class JSONObjectField(serializers.JSONField):
    """A JSON object (a mapping), not any JSON value."""

    default_error_messages = {"not_object": "Must be a JSON object."}

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            self.fail("not_object")
        return data


class NumberField(serializers.FloatField):
    """A JSON number: a string or a boolean is a mistyped field, not something to convert."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        return super().to_internal_value(data)


class StringField(serializers.CharField):
    """A JSON string: a number is a mistyped field, not something to convert."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class JSONBooleanField(serializers.BooleanField):
    """A JSON true or false: "yes", 1 or "true" are mistyped fields, not something to convert."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StringURLField(serializers.URLField):
    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class CallbackURLField(StringURLField):
    """A webhook target: refused at the door when it names a private address outright (contract
    §1); a name that resolves to one is refused when delivering (approvals.integrations.webhooks)."""

    def to_internal_value(self, data: Any) -> str:
        url = super().to_internal_value(data)
        if url and (reason := webhooks.literal_target_refusal(url)):
            raise serializers.ValidationError(reason)
        return url


@extend_schema_field({"oneOf": [{"type": "array", "items": {"type": "object"}}, {"type": "object"}]})
class TrajectoryField(serializers.Field):
    """Native steps, or {"format": "openai", "messages": [...]}; validated by normalising it."""

    def to_internal_value(self, data: Any) -> Any:
        limit = settings.GATE_MAX_TRAJECTORY_STEPS
        # Counted before normalising too, so that a huge list is refused before it is walked.
        given = data.get("messages") if isinstance(data, dict) else data
        if isinstance(given, list) and len(given) > limit:
            raise serializers.ValidationError(self._too_long(len(given), limit))
        try:
            steps = policy.normalize_trajectory(data)
        except policy.TrajectoryError as exc:
            raise serializers.ValidationError(f"{exc.path}: {exc.message}") from exc
        if len(steps) > limit:
            raise serializers.ValidationError(self._too_long(len(steps), limit))
        for index, step in enumerate(steps):
            if len(step["tool"]) > MAX_TOOL_NAME_LENGTH:
                raise serializers.ValidationError(
                    f"trajectory step {index}: the tool name is {len(step['tool'])} characters long; "
                    f"the limit is {MAX_TOOL_NAME_LENGTH}"
                )
        return {"raw": data, "steps": steps}

    @staticmethod
    def _too_long(count: int, limit: int) -> str:
        return f"trajectory has {count} steps; the limit is {limit} (GATE_MAX_TRAJECTORY_STEPS)"

    def to_representation(self, value: Any) -> Any:
        return value


@extend_schema_field({"type": "string", "description": "The name of an action type"})
class ActionTypeField(serializers.Field):
    """An action type, by name. Not a SlugRelatedField: DRF deep-copies a serializer's declared
    fields for every instance, and a related field's queryset with them, which cost proposing ~12% of
    a web process's CPU (bench/results/report.md, profiles)."""

    default_error_messages = {"does_not_exist": "Unknown action type {value}.", "invalid": "Invalid value."}

    def to_internal_value(self, data: Any) -> ActionType:
        if not isinstance(data, str):
            self.fail("invalid")
        # Proposing needs only these; the policy itself (schema, rules) is the worker's to load.
        found = ActionType.objects.only("id", "name", "enabled").filter(name=data).first()
        if found is None:
            self.fail("does_not_exist", value=data)
        return found

    def to_representation(self, value: ActionType) -> str:
        return value.name


class ProposeSerializer(serializers.Serializer):
    action_type = ActionTypeField()
    params = JSONObjectField(
        help_text="The tool call's arguments, as an object; the policy checks them against the type's params_schema"
    )
    idempotency_key = StringField(
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        required=False,
        allow_null=True,
        help_text="Equal to the Idempotency-Key header when both are given (else 400); see the operation",
    )
    confidence = NumberField(min_value=0.0, max_value=1.0, required=False, allow_null=True)
    rationale = StringField(required=False, allow_blank=True, max_length=20000, trim_whitespace=False)
    context = JSONObjectField(  # type: ignore[assignment]  # the metaclass pops declared fields
        required=False, help_text="Facts about the call the rules may read (context.session_id groups a session)"
    )
    trajectory = TrajectoryField(required=False, allow_null=True)
    callback_url = CallbackURLField(required=False, allow_blank=True, max_length=2000)


class DecisionInputSerializer(serializers.Serializer):
    verdict = serializers.ChoiceField(choices=Verdict.choices)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=5000, default="")
    remember_minutes = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=1,
        max_value=24 * 60,
        help_text="Approve only: also approve, for this many minutes, later proposals of the same agent, "
        "type and context.session_id that fail only checks this one failed.",
    )
    params = JSONObjectField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Approve only: the params the agent is to act with instead of the proposed ones (checked "
        "against the action type's schema); reason says why.",
    )


class OutcomeInputSerializer(serializers.Serializer):
    executed = JSONBooleanField()
    result = serializers.JSONField(required=False, allow_null=True, default=None)
    error = StringField(required=False, allow_blank=True, max_length=5000, default="")
    params_hash = serializers.RegexField(
        r"\A[0-9a-f]{64}\Z",
        required=False,
        allow_null=True,
        default=None,
        help_text="SHA-256 hex of the params executed (JSON, sorted keys, no spaces); one that differs from "
        "approved_params_hash is stored with params_mismatch.",
    )


class LabelInputSerializer(serializers.Serializer):
    label = serializers.ChoiceField(choices=LabelValue.choices)  # type: ignore[assignment]  # a declared field
    tags = serializers.ListField(
        child=serializers.RegexField(r"^[A-Za-z0-9_.:-]{1,64}$"), required=False, default=list, max_length=20
    )
    note = serializers.CharField(required=False, allow_blank=True, max_length=5000, default="")


class ActionSerializer(serializers.Serializer):
    """Documents the representation; ``action_representation`` produces it."""

    id = serializers.UUIDField()
    url = serializers.CharField()
    review_url = serializers.CharField()
    action_type = serializers.CharField()
    agent = serializers.CharField()
    status = serializers.ChoiceField(choices=Status.choices)
    params = JSONObjectField()
    approved_params = JSONObjectField(allow_null=True, help_text="A reviewer's edit: act with these")
    approved_params_hash = serializers.CharField(allow_null=True)
    context = JSONObjectField()  # type: ignore[assignment]  # a declared field
    confidence = serializers.FloatField(allow_null=True)
    rationale = serializers.CharField()
    idempotency_key = serializers.CharField(allow_null=True)
    risk_score = serializers.FloatField(allow_null=True)
    findings = serializers.ListField(child=serializers.DictField())
    decision = serializers.DictField(allow_null=True)
    policy_version = serializers.IntegerField(allow_null=True)
    labels = serializers.ListField(child=serializers.DictField())
    approvals = serializers.ListField(child=serializers.DictField(), help_text='[{"by", "at"}], oldest first')
    approvals_required = serializers.IntegerField()
    remembered_approval = serializers.IntegerField(allow_null=True)
    outcome = serializers.DictField(allow_null=True)
    audit_flagged = serializers.BooleanField()
    escalated = serializers.BooleanField()
    sla_deadline = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    evaluated_at = serializers.DateTimeField(allow_null=True)
    decided_at = serializers.DateTimeField(allow_null=True)

    def to_representation(self, instance: ProposedAction) -> dict[str, Any]:
        return action_representation(instance)


class LabelSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    label = serializers.CharField()  # type: ignore[assignment]  # a declared field
    tags = serializers.ListField(child=serializers.CharField())
    note = serializers.CharField()
    author = serializers.CharField(source="author.username", allow_null=True)
    created_at = serializers.DateTimeField()


class RememberedApprovalSerializer(serializers.Serializer):
    """Documents a remembered approval; ``remembered_approval_representation`` produces it."""

    id = serializers.IntegerField()
    source_action = serializers.UUIDField(help_text="The action whose approval was remembered")
    agent = serializers.CharField()
    action_type = serializers.CharField()
    session_id = serializers.CharField()
    failed = serializers.ListField(
        child=serializers.CharField(),
        help_text="The checks it accepts: a later proposal failing only these is approved",
    )
    reviewer = serializers.CharField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    revoked_at = serializers.DateTimeField(allow_null=True)
    revoked_by = serializers.CharField(allow_null=True)
    lapsed_reason = serializers.CharField(
        help_text="Set when it lapsed: an action it covered, or its own, was reported as not executed"
    )
    applied_to = serializers.IntegerField(help_text="How many actions it auto-approved")

    def to_representation(self, instance: RememberedApproval) -> dict[str, Any]:
        return remembered_approval_representation(instance)
