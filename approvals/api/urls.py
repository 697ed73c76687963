from django.urls import include, path

from approvals.evaluation import api as evaluation
from approvals.gate import api as gate
from approvals.review import api as review

urlpatterns = [
    path("actions", gate.ActionCollectionView.as_view(), name="action-list"),
    path("actions/<uuid:action_id>", gate.ActionDetailView.as_view(), name="action-detail"),
    path("actions/<uuid:action_id>/cancel", gate.ActionCancelView.as_view(), name="action-cancel"),
    path("actions/<uuid:action_id>/outcome", gate.ActionOutcomeView.as_view(), name="action-outcome"),
    path("actions/<uuid:action_id>/decision", review.ActionDecisionView.as_view(), name="action-decision"),
    path("actions/<uuid:action_id>/labels", review.ActionLabelsView.as_view(), name="action-labels"),
    path("remembered-approvals", review.RememberedApprovalListView.as_view(), name="remembered-approval-list"),
    path(
        "remembered-approvals/<int:remembered_id>/revoke",
        review.RememberedApprovalRevokeView.as_view(),
        name="remembered-approval-revoke",
    ),
    path("review/queue", review.ReviewQueueView.as_view(), name="review-queue"),
    path("evaluation/summary", evaluation.EvaluationSummaryView.as_view(), name="evaluation-summary"),
    path("evaluation/", include("approvals.evaluation.api_urls")),
]
