from django.urls import include, path

from approvals.api import views

urlpatterns = [
    path("actions", views.ActionCollectionView.as_view(), name="action-list"),
    path("actions/<uuid:action_id>", views.ActionDetailView.as_view(), name="action-detail"),
    path("actions/<uuid:action_id>/cancel", views.ActionCancelView.as_view(), name="action-cancel"),
    path("actions/<uuid:action_id>/outcome", views.ActionOutcomeView.as_view(), name="action-outcome"),
    path("actions/<uuid:action_id>/decision", views.ActionDecisionView.as_view(), name="action-decision"),
    path("actions/<uuid:action_id>/labels", views.ActionLabelsView.as_view(), name="action-labels"),
    path("remembered-approvals", views.RememberedApprovalListView.as_view(), name="remembered-approval-list"),
    path(
        "remembered-approvals/<int:remembered_id>/revoke",
        views.RememberedApprovalRevokeView.as_view(),
        name="remembered-approval-revoke",
    ),
    path("review/queue", views.ReviewQueueView.as_view(), name="review-queue"),
    path("evaluation/summary", views.EvaluationSummaryView.as_view(), name="evaluation-summary"),
    path("evaluation/", include("approvals.evaluation.api_urls")),
]
