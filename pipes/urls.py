"""URLs of the process model's pages: the board (pipes.board.urls), the portal (pipes.portal.urls) and
the designer (pipes.designer.urls)."""

from django.urls import include, path

urlpatterns = [
    path("", include("pipes.board.urls")),
    path("portal/", include("pipes.portal.urls")),
    path("design/", include("pipes.designer.urls")),
]
