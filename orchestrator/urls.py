"""URLs of the whole project."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from pipes.accounts import ThrottledLoginView

urlpatterns = [
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("governance/", include("pipes.governance.urls")),
    path("rail/", include("orchestrator.rail.urls")),
    path("inbox/", include("orchestrator.inbox.urls")),
    path("api/v1/", include("orchestrator.api.urls")),
    path("api-tokens/", include("orchestrator.api.token_urls")),
    path("webhooks/", include("orchestrator.webhooks.urls")),
    path("", include("pipes.urls")),
]
