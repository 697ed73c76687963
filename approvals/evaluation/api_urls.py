"""The evaluation API beyond the contract's summary: figures, sweeps, rule health, exports, what-if,
the shadow policy."""

from django.urls import URLPattern, path

from approvals.evaluation import api as views

urlpatterns: list[URLPattern] = [
    path("figures", views.EvaluationFiguresView.as_view(), name="evaluation-figures"),
    path("agents", views.EvaluationAgentsView.as_view(), name="evaluation-agents"),
    path("sweep", views.EvaluationSweepView.as_view(), name="evaluation-sweep"),
    path("sweep/apply", views.EvaluationSweepApplyView.as_view(), name="evaluation-sweep-apply"),
    path("rules", views.EvaluationRulesView.as_view(), name="evaluation-rules"),
    path("shadow", views.EvaluationShadowView.as_view(), name="evaluation-shadow"),
    path("export.jsonl", views.EvaluationExportJSONLView.as_view(), name="evaluation-export-jsonl"),
    path("export.csv", views.EvaluationExportCSVView.as_view(), name="evaluation-export-csv"),
]
