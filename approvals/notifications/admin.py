"""Admin of notifications: who a type tells (a field of the type's form), the reviewers' Slack user
ids (inline on the user's page), and the notification rows with their state (read only)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.http import HttpRequest

from approvals.models import Notification, ReviewerProfile


class EmailListField(forms.Field):
    """``notify_emails`` as one address a line (or comma-separated); the type's form checks them
    with the policy format's parser, which names the bad one."""

    widget = forms.Textarea(attrs={"rows": 3, "spellcheck": "false"})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return "\n".join(str(item) for item in value)
        return value

    def to_python(self, value: Any) -> list[str]:
        if isinstance(value, list):
            return value
        text = str(value or "")
        return [item.strip() for line in text.splitlines() for item in line.split(",") if item.strip()]


class ReviewerProfileInline(admin.StackedInline):
    model = ReviewerProfile
    can_delete = False
    extra = 1
    max_num = 1
    verbose_name_plural = "Reviewer profile (Slack)"
    fields = ["slack_user_id"]


class GateUserAdmin(UserAdmin):
    """Django's user admin with the reviewer's profile on the same page."""

    inlines = [*UserAdmin.inlines, ReviewerProfileInline]


admin.site.unregister(User)
admin.site.register(User, GateUserAdmin)


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["action", "channel", "state", "attempts", "created_at", "sent_at", "last_error"]
    list_filter = ["channel", "state"]
    search_fields = ["action__id"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
