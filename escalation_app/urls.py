from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView

from approvals import views

# JSON for API clients, Django's HTML pages for people.
handler404 = "approvals.views.not_found"

urlpatterns = [
    path("", RedirectView.as_view(url="/review/", permanent=False)),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/v1/", include("approvals.api.urls")),
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    path("evaluation/", include("approvals.evaluation.urls")),
    path("review/", views.review_queue, name="review-queue"),
    path("review/<uuid:action_id>", views.review_detail, name="review-detail"),
    path("review/<uuid:action_id>/row", views.review_row, name="review-row"),
    path("review/<uuid:action_id>/decide", views.review_decide, name="review-decide"),
    path("review/<uuid:action_id>/label", views.review_label, name="review-label"),
    path("", include("approvals.ops_urls")),
]

if settings.GATE_BENCH_BASELINE:  # bench-only (bench/baseline), never in production
    urlpatterns.append(path("bench/baseline/", include("bench.baseline.urls")))
