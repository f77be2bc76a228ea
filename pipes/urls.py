"""URLs of the process model's pages: the board (pipes.board.urls) and the portal (pipes.portal.urls)."""

from django.urls import include, path

urlpatterns = [
    path("", include("pipes.board.urls")),
    path("portal/", include("pipes.portal.urls")),
]
