"""Admin: agents, action types and their rules. Policies are validated as a whole before they are
saved, every change records a new policy version, and statuses are never edited by hand."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpRequest

from approvals import policy, services
from approvals.models import ActionType, Agent, AuditEvent, Label, PolicyVersion, ProposedAction, Rule


class RuleInlineForm(forms.ModelForm):
    class Meta:
        model = Rule
        fields = ["position", "name", "require", "on_fail", "risk", "message"]
        widgets = {"require": forms.Textarea(attrs={"rows": 2, "cols": 80})}

    def clean_require(self) -> str:
        expression = self.cleaned_data["require"]
        reason = policy.check_cel_expression(expression)
        if reason:
            raise forms.ValidationError(reason)
        return str(expression)

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        if name in policy.spec.RESERVED_RULE_NAMES:
            raise forms.ValidationError(f"{name!r} is reserved for the gate's own findings")
        return str(name)

    def clean_risk(self) -> float:
        risk = self.cleaned_data["risk"]
        if not 0 <= risk <= 1:
            raise forms.ValidationError("must be between 0 and 1")
        return float(risk)


class RuleInline(admin.TabularInline):
    model = Rule
    form = RuleInlineForm
    extra = 0


class ActionTypeForm(forms.ModelForm):
    class Meta:
        model = ActionType
        fields = [
            "name",
            "description",
            "enabled",
            "mode",
            "params_schema",
            "base_risk",
            "auto_approve_max_risk",
            "block_min_risk",
            "min_confidence",
            "amount_path",
            "max_auto_amount",
            "audit_sample_rate",
            "builtin_checks",
            "review_sla_minutes",
            "expire_after_minutes",
        ]

    def clean_params_schema(self) -> Any:
        schema = self.cleaned_data["params_schema"]
        reason = policy.check_json_schema(schema)
        if reason:
            raise forms.ValidationError(reason)
        return schema

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for field in ("base_risk", "auto_approve_max_risk", "block_min_risk", "min_confidence", "audit_sample_rate"):
            value = cleaned.get(field)
            if value is not None and not 0 <= value <= 1:
                self.add_error(field, "must be between 0 and 1")
        if cleaned.get("max_auto_amount") is not None and not cleaned.get("amount_path"):
            self.add_error("amount_path", "is required when max_auto_amount is set")
        return cleaned


@admin.register(ActionType)
class ActionTypeAdmin(admin.ModelAdmin):
    form = ActionTypeForm
    inlines = [RuleInline]
    list_display = [
        "name",
        "enabled",
        "mode",
        "base_risk",
        "auto_approve_max_risk",
        "max_auto_amount",
        "policy_version",
    ]
    list_filter = ["enabled", "mode"]
    search_fields = ["name", "description"]
    readonly_fields = ["policy_version", "updated_at"]

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        with transaction.atomic():
            super().save_related(request, form, formsets, change)
            version = services.action_type_policy_changed(
                action_type=form.instance, actor=f"user:{request.user.get_username()}"
            )
        messages.info(request, f"Saved as policy_version {version}.")


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["name", "enabled", "all_action_types", "token_prefix", "created_at"]
    list_filter = ["enabled"]
    search_fields = ["name"]
    fields = ["name", "enabled", "all_action_types", "action_types", "token_prefix", "created_at"]
    readonly_fields = ["token_prefix", "created_at"]
    filter_horizontal = ["action_types"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Agents are created with `manage.py create_agent`, which shows the token once.
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ProposedAction)
class ProposedActionAdmin(ReadOnlyAdmin):
    list_display = ["id", "action_type", "agent", "status", "risk_score", "created_at"]
    list_filter = ["status", "action_type", "audit_flagged", "escalated"]
    search_fields = ["id", "idempotency_key", "agent__name"]
    list_select_related = ["action_type", "agent"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "event", "actor", "action", "from_status", "to_status"]
    list_filter = ["event"]
    search_fields = ["actor", "action__id"]


@admin.register(PolicyVersion)
class PolicyVersionAdmin(ReadOnlyAdmin):
    list_display = ["number", "source", "created_by", "created_at"]


@admin.register(Label)
class LabelAdmin(ReadOnlyAdmin):
    list_display = ["action", "label", "author", "created_at"]
    list_filter = ["label"]
