"""URLs of the process model's pages: the board (board_urls) and the portal (portal_urls)."""

from django.urls import include, path

urlpatterns = [
    path("", include("pipes.board_urls")),
    path("portal/", include("pipes.portal_urls")),
]
