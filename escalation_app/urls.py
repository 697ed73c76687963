from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView

# JSON for API clients, Django's HTML pages for people.
handler404 = "approvals.review.views.not_found"

urlpatterns = [
    path("", RedirectView.as_view(url="/review/", permanent=False)),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/v1/", include("approvals.api.urls")),
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    path("evaluation/", include("approvals.evaluation.urls")),
    path("review/", include("approvals.review.urls")),
    path("integrations/", include("approvals.notifications.urls")),
    path("", include("approvals.ops.urls")),
]
