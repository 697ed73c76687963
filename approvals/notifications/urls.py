"""Requests from other services (/integrations/)."""

from django.urls import path

from approvals.notifications import views

urlpatterns = [
    path("slack/interactions", views.slack_interactions, name="slack-interactions"),
]
