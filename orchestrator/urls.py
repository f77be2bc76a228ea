"""URLs of the whole project."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, reverse_lazy

from pipes.accounts import ThrottledLoginView

urlpatterns = [
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # An invited person chooses their first password (pipes.design.design_invite sends the link).
    path(
        "accounts/set-password/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(
            template_name="registration/set_password.html", success_url=reverse_lazy("set_password_done")
        ),
        name="set_password",
    ),
    path(
        "accounts/set-password/done/",
        auth_views.PasswordResetCompleteView.as_view(template_name="registration/set_password_done.html"),
        name="set_password_done",
    ),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("governance/", include("pipes.governance.urls")),
    path("rail/", include("orchestrator.rail.urls")),
    path("inbox/", include("orchestrator.inbox.urls")),
    path("api/v1/", include("orchestrator.api.urls")),
    path("api-tokens/", include("orchestrator.api.token_urls")),
    path("webhooks/", include("orchestrator.webhooks.urls")),
    # The designer's steps, agents and allowed hosts, beside pipes.designer's pages under design/.
    path("design/", include("orchestrator.design.urls")),
    path("", include("pipes.urls")),
]
