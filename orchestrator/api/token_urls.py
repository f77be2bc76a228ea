"""The API tokens page, mounted at /api-tokens/ (namespace "api_tokens")."""

from django.urls import path

from . import pages

app_name = "api_tokens"

urlpatterns = [
    path("", pages.tokens, name="index"),
    path("<int:token_id>/revoke/", pages.token_revoke_view, name="revoke"),
]
