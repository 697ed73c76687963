"""The admin's policy pages beside approvals/admin.py: the fields of the rules editor (CEL and JSON
shown to be read) and the comparison of two policy versions (approvals.gate.policy_diff)."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.forms.fields import InvalidJSONInput
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from approvals.gate import selectors
from approvals.gate.policy_diff import policy_diff
from approvals.models import PolicyVersion


def rows_for(text: str, *, least: int, most: int, width: int = 100) -> int:
    """Enough rows of a textarea to show ``text`` (wrapped at about ``width``) without scrolling."""
    lines = sum(1 + len(line) // width for line in text.splitlines()) if text else 0
    return max(least, min(most, lines + 1))


class PrettyJSONField(forms.JSONField):
    """JSON shown indented, to be read and edited; what is saved is the same value."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, InvalidJSONInput):  # what the admin typed, kept to be corrected
            return value
        return json.dumps(value, ensure_ascii=False, indent=2, cls=self.encoder)


class PolicyCompareForm(forms.Form):
    a = forms.TypedChoiceField(coerce=int, label="A (before)")
    b = forms.TypedChoiceField(coerce=int, label="B (after)")

    def __init__(self, *args: Any, versions: list[PolicyVersion], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [
            (v.number, f"v{v.number} · {v.source} · {v.created_by or '\u2013'} · {v.created_at:%Y-%m-%d %H:%M}")
            for v in versions
        ]
        for name in ("a", "b"):
            self.fields[name].choices = choices  # type: ignore[attr-defined]


def policy_versions_compare(model_admin: admin.ModelAdmin, request: HttpRequest) -> HttpResponse:
    """Two versions side by side (``?a=&b=``; without them the latest change): fields and rules,
    with the CEL of each side. An unknown version is the form's error, and no diff."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    versions = list(selectors.policy_versions())
    data: Any = request.GET if "a" in request.GET or "b" in request.GET else None
    if data is None and len(versions) >= 2:
        data = {"a": str(versions[1].number), "b": str(versions[0].number)}
    form = PolicyCompareForm(data, versions=versions)
    context: dict[str, Any] = {
        **model_admin.admin_site.each_context(request),
        "title": "Compare policy versions",
        "opts": model_admin.opts,
        "form": form,
        "versions": versions,
    }
    if form.is_valid():
        before = selectors.policy_version_numbered(form.cleaned_data["a"])
        after = selectors.policy_version_numbered(form.cleaned_data["b"])
        if before is not None and after is not None:
            context.update(before=before, after=after, diff=policy_diff(before.document, after.document))
    return TemplateResponse(request, "admin/approvals/policyversion/compare.html", context)
