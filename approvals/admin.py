"""Admin: agents, action types and their rules. Policies are validated as a whole before they are
saved, every change records a new policy version, and statuses are never edited by hand."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import yaml
from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from approvals import policy
from approvals.errors import UnsafePolicyChange
from approvals.evaluation.policy_confirm import accepted_ids, policy_change_confirm
from approvals.gate import selectors
from approvals.gate.agents import AGENT_SETTINGS, agent_revoke_tokens, agent_rotate_token, agent_update
from approvals.gate.policies import action_type_policy_changed
from approvals.integrations.services import webhook_redeliver
from approvals.models import (
    ActionType,
    Agent,
    AuditEvent,
    Label,
    PolicyVersion,
    ProposedAction,
    RememberedApproval,
    Rule,
    WebhookDelivery,
    WhatIfRun,
)
from approvals.notifications.admin import EmailListField
from approvals.policy_admin import PrettyJSONField, policy_versions_compare, rows_for
from approvals.review.services import remembered_approval_revoke


def _validate_with_spec(
    form: forms.ModelForm, parse: Callable[[dict[str, Any], str], Any], place: str, spec_fields: Iterable[str]
) -> None:
    """Validate the form's values with the policy format's own parser (the one import_policies
    uses), so that the admin refuses exactly what a policy file would, with the same messages."""
    values = {name: _as_written(form.cleaned_data[name]) for name in spec_fields if name in form.cleaned_data}
    try:
        parse(values, place)
    except policy.PolicyError as exc:
        for error in exc.errors:
            where, _, message = error.partition(": ")
            field = where.removeprefix(f"{place}.")
            if field not in form.fields:
                form.add_error(None, error)
            elif field not in form.errors:  # the form's own check already said what is wrong
                form.add_error(field, message)


def _as_written(value: Any) -> Any:
    """A form's value as a policy file writes it: a review group by its name."""
    return value.name if isinstance(value, Group) else value


def _parse_rule(data: dict[str, Any], place: str) -> policy.RuleSpec:
    rule, errors = policy.spec.parse_rule(data, place)
    if rule is None:
        raise policy.PolicyError(errors)
    return rule


class RuleInlineForm(forms.ModelForm):
    class Meta:
        model = Rule
        fields = ["position", "name", "require", "on_fail", "risk", "message"]
        widgets = {
            "require": forms.Textarea(attrs={"class": "cel-source", "rows": 3, "spellcheck": "false"}),
            "message": forms.Textarea(attrs={"class": "rule-message", "rows": 2}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, least, most in (("require", 3, 24), ("message", 2, 6)):
            text = str(self[name].value() or "")
            self.fields[name].widget.attrs["rows"] = rows_for(text, least=least, most=most)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not cleaned.get("DELETE"):
            _validate_with_spec(self, _parse_rule, "rule", policy.spec.RULE_FIELDS)
        return cleaned


class RuleFormSet(forms.BaseInlineFormSet):
    """The rules of a type as edited; once they and the type's fields are valid, the type's policy
    tests run on the edit (contract §6.2): a failing test refuses the save, with what it got."""

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        edited = sorted(
            (form.cleaned_data for form in self.forms if form.cleaned_data and not form.cleaned_data.get("DELETE")),
            key=lambda data: data.get("position") or 0,
        )
        rules = tuple(
            policy.RuleSpec(
                name=data["name"],
                require=data["require"],
                on_fail=data["on_fail"],
                risk=data["risk"],
                message=data.get("message") or "",
            )
            for data in edited
        )
        try:
            spec = selectors.action_type_spec(self.instance, rules=rules)
            policy.parse_action_type(spec.to_document(), "action_type")
        except (policy.PolicyError, ValueError):
            return  # the type's own form says what is wrong
        failures = [result for result in policy.policy_tests_run([spec]) if not result.passed]
        if failures:
            raise ValidationError([f"Policy test failed: {failure.report()}" for failure in failures])


class RuleInline(admin.StackedInline):
    """One rule a block, its CEL in a monospaced box as wide as the page allows."""

    model = Rule
    form = RuleInlineForm
    formset = RuleFormSet
    extra = 0
    fields = [("name", "position"), "require", ("on_fail", "risk"), "message"]


class ActionTypeForm(forms.ModelForm):
    notify_emails = EmailListField(
        required=False, help_text="Addresses told of every held action of this type: one a line."
    )
    params_schema = PrettyJSONField(
        widget=forms.Textarea(attrs={"class": "json-source", "rows": 8, "spellcheck": "false"}),
        help_text="A JSON Schema (draft 2020-12) that the params must match.",
    )
    # Optional in the form (blank: 1), so that a form posted without it keeps the one-person rule.
    approvals_required = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=policy.spec.MAX_APPROVALS_REQUIRED,
        initial=1,
        help_text="How many distinct reviewers must approve a held action (the two-person rule: 2).",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        text = str(self["params_schema"].value() or "")
        self.fields["params_schema"].widget.attrs["rows"] = rows_for(text, least=8, most=40)

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
            "review_group",
            "escalation_group",
            "notify_emails",
            "notify_slack",
            "approvals_required",
        ]
        help_texts = {
            "review_group": "Only its members (and superusers) see and decide this type's held actions; "
            "empty: every reviewer.",
            "escalation_group": "Its members also see and decide an action once it is past the review SLA.",
        }

    def clean_approvals_required(self) -> int:
        return self.cleaned_data.get("approvals_required") or 1

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        # Rules come from the inline forms, each checked by RuleInlineForm.
        _validate_with_spec(self, policy.parse_action_type, "action_type", self.Meta.fields)
        return cleaned


@admin.register(ActionType)
class ActionTypeAdmin(admin.ModelAdmin):
    form = ActionTypeForm
    inlines = [RuleInline]
    list_display = [
        "name",
        "enabled",
        "mode",
        "approvals_required",
        "base_risk",
        "auto_approve_max_risk",
        "max_auto_amount",
        "review_group",
        "policy_version",
    ]
    list_filter = ["enabled", "mode", "review_group"]
    list_select_related = ["review_group"]
    search_fields = ["name", "description"]
    readonly_fields = ["policy_version", "updated_at", "evaluation", "policy_tests"]

    class Media:
        css = {"all": ["approvals/admin.css"]}

    @admin.display(description="Evaluation")
    def evaluation(self, obj: ActionType) -> str:
        if obj.pk is None:
            return "-"
        url = f"{reverse('evaluation-dashboard')}?{urlencode({'sweep': obj.name, 'window': 'all'})}#sweep"
        return format_html('<a href="{}">Threshold sweep, recommendation and rule health for {}</a>', url, obj.name)

    @admin.display(description="Policy tests")
    def policy_tests(self, obj: ActionType) -> str:
        """The type's tests (set by import_policies; every save must pass them): each name and the
        decision it expects, and the tests as the policy file writes them."""
        if obj.pk is None or not obj.tests:
            return "-"
        tests = selectors.action_type_spec(obj).tests_document()
        text = yaml.safe_dump(tests, sort_keys=False, allow_unicode=True, width=110)
        names = format_html_join("", "<li>{} <code>{}</code></li>", ((t["name"], t["expect"]) for t in tests))
        return format_html(
            '<ul class="policy-tests">{}</ul><details><summary>As in the policy file</summary><pre>{}</pre></details>',
            names,
            text,
        )

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except UnsafePolicyChange as refusal:
            # Raised inside the admin's transaction, which undid the whole save: ask before going live.
            return policy_change_confirm(
                request,
                refusal,
                base_template="admin/base_site.html",
                cancel_url=request.path,
                context=self.admin_site.each_context(request),
            )
        except policy.PolicyError as exc:
            messages.error(request, "Nothing saved: " + "; ".join(exc.errors))
            return HttpResponseRedirect(request.path)

    def save_model(self, request: HttpRequest, obj: ActionType, form: Any, change: bool) -> None:
        """Saved in save_related, after the live policy is read, with its rules, through the service."""

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        action_type = form.instance
        # The policy that is live until this save: what the safety net compares the edit with.
        before = selectors.action_type_spec(ActionType.objects.get(pk=action_type.pk)) if change else None
        with transaction.atomic():
            super().save_model(request, action_type, form, change)
            super().save_related(request, form, formsets, change)
            version = action_type_policy_changed(
                action_type=action_type,
                actor=f"user:{request.user.get_username()}",
                before=before,
                accept_risk=accepted_ids(request),
            )
        messages.info(request, f"Saved as policy_version {version}.")


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["name", "enabled", "all_action_types", "token_prefix", "rate_limit_per_minute", "created_at"]
    list_filter = ["enabled"]
    search_fields = ["name"]
    fields = [
        "name",
        "enabled",
        "all_action_types",
        "action_types",
        "rate_limit_per_minute",
        "token_prefix",
        "token_rotated_at",
        "previous_token_expires_at",
        "token_revoked_at",
        "created_at",
    ]
    readonly_fields = [
        "token_prefix",
        "token_rotated_at",
        "previous_token_expires_at",
        "token_revoked_at",
        "created_at",
    ]
    filter_horizontal = ["action_types"]
    actions = ["rotate_token", "rotate_token_now", "revoke_tokens"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Agents are created with `manage.py create_agent`, which shows the token once.
        return False

    def save_model(self, request: HttpRequest, obj: Agent, form: Any, change: bool) -> None:
        """Saved in save_related, with its action types, through the service that audits it."""

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        agent_update(
            agent=form.instance,
            actor=f"user:{request.user.get_username()}",
            changes={name: form.cleaned_data[name] for name in AGENT_SETTINGS if name in form.cleaned_data},
            action_types=form.cleaned_data.get("action_types"),
        )

    def _issue_tokens(self, request: HttpRequest, queryset: QuerySet[Agent], grace_minutes: int | None) -> HttpResponse:
        actor = f"user:{request.user.get_username()}"
        issued = [
            (agent, agent_rotate_token(agent=agent, actor=actor, grace_minutes=grace_minutes)) for agent in queryset
        ]
        # The tokens are shown on this response only: not in a message (which the cookie storage
        # would carry to the next page), and never cached.
        response = TemplateResponse(
            request,
            "admin/approvals/agent/tokens_issued.html",
            {**self.admin_site.each_context(request), "title": "New agent tokens", "issued": issued},
        )
        add_never_cache_headers(response)
        return response

    @admin.action(
        permissions=["change"], description="Rotate token (the previous one keeps working for the grace period)"
    )
    def rotate_token(self, request: HttpRequest, queryset: QuerySet[Agent]) -> HttpResponse:
        return self._issue_tokens(request, queryset, grace_minutes=None)

    @admin.action(permissions=["change"], description="Rotate token now (the previous one stops at once)")
    def rotate_token_now(self, request: HttpRequest, queryset: QuerySet[Agent]) -> HttpResponse:
        return self._issue_tokens(request, queryset, grace_minutes=0)

    @admin.action(permissions=["change"], description="Revoke every token of the selected agents")
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        actor = f"user:{request.user.get_username()}"
        names = []
        for agent in queryset:
            agent_revoke_tokens(agent=agent, actor=actor)
            names.append(agent.name)
        self.message_user(request, f"Revoked every token of: {', '.join(names)}.", messages.WARNING)


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
    list_display = ["number", "source", "created_by", "created_at", "compare"]
    actions = ["compare_selected"]

    class Media:
        css = {"all": ["approvals/admin.css"]}

    def get_urls(self) -> list[URLPattern]:
        compare = path(
            "compare/",
            self.admin_site.admin_view(self.compare_view),
            name="approvals_policyversion_compare",
        )
        return [compare, *super().get_urls()]

    @admin.display(description="Compare")
    def compare(self, obj: PolicyVersion) -> str:
        if obj.number <= 1:
            return "\u2013"
        url = f"{reverse('admin:approvals_policyversion_compare')}?{urlencode({'a': obj.number - 1, 'b': obj.number})}"
        return format_html('<a href="{}">with v{}</a>', url, obj.number - 1)

    @admin.action(permissions=["view"], description="Compare the two selected versions")
    def compare_selected(self, request: HttpRequest, queryset: QuerySet[PolicyVersion]) -> HttpResponse | None:
        numbers = sorted(queryset.values_list("number", flat=True))
        if len(numbers) != 2:
            self.message_user(request, "Select exactly two versions to compare.", messages.ERROR)
            return None
        query = urlencode({"a": numbers[0], "b": numbers[1]})
        return HttpResponseRedirect(f"{reverse('admin:approvals_policyversion_compare')}?{query}")

    def compare_view(self, request: HttpRequest) -> HttpResponse:
        return policy_versions_compare(self, request)


@admin.register(Label)
class LabelAdmin(ReadOnlyAdmin):
    list_display = ["action", "label", "author", "created_at"]
    list_filter = ["label"]


@admin.register(WhatIfRun)
class WhatIfRunAdmin(ReadOnlyAdmin):
    list_display = ["id", "state", "progress_display", "created_by", "created_at", "finished_at", "results"]
    list_filter = ["state"]
    fields = ("state", "processed", "total", "error", "created_by", "created_at", "finished_at", "document")
    readonly_fields = ("state", "processed", "total", "error", "created_by", "created_at", "finished_at", "document")

    @admin.display(description="Progress")
    def progress_display(self, obj: WhatIfRun) -> str:
        return f"{obj.processed} / {obj.total} ({obj.progress:.0%})"

    @admin.display(description="Results")
    def results(self, obj: WhatIfRun) -> str:
        return format_html('<a href="{}">open</a>', reverse("evaluation-whatif-detail", args=[obj.pk]))


@admin.register(RememberedApproval)
class RememberedApprovalAdmin(ReadOnlyAdmin):
    list_display = ["id", "agent", "action_type", "session_id", "reviewer", "created_at", "expires_at", "revoked_at"]
    list_filter = ["action_type", "agent", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["session_id", "agent__name", "source_action__id"]
    list_select_related = ["agent", "action_type", "reviewer"]
    actions = ["revoke"]

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("approvals.change_rememberedapproval")

    @admin.action(description="Revoke the selected remembered approvals", permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[RememberedApproval]) -> None:
        revoked = 0
        for remembered in queryset.filter(revoked_at__isnull=True):
            remembered_approval_revoke(remembered=remembered, user=request.user)  # type: ignore[arg-type]
            revoked += 1
        messages.success(request, f"Revoked {revoked} remembered approval{'' if revoked == 1 else 's'}.")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """Deliveries and their failures; redelivering sends the same signed body again (a new row)."""

    list_display = ["id", "event", "action", "url", "state", "attempts", "last_status_code", "last_error", "created_at"]
    list_filter = ["state", "event"]
    search_fields = ["url", "action__id"]
    readonly_fields = [
        "action",
        "event",
        "url",
        "state",
        "attempts",
        "last_status_code",
        "last_error",
        "created_at",
        "delivered_at",
        "body",
    ]
    actions = ["redeliver"]

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("approvals.change_webhookdelivery")

    @admin.action(description="Redeliver the selected webhooks", permissions=["redeliver"])
    def redeliver(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        deliveries = list(queryset.select_related("action"))
        for delivery in deliveries:
            webhook_redeliver(delivery=delivery, actor=f"user:{request.user.get_username()}")
        count = len(deliveries)
        messages.success(request, f"Queued {count} redeliver{'y' if count == 1 else 'ies'}.")
