"""URLs of the board: home, a pipe's board, the card panel and their HTMX endpoints."""

from django.urls import path

from . import views

card = "pipes/<int:pipe_id>/cards/<int:card_id>/"

urlpatterns = [
    path("", views.home, name="home"),
    path("pipes/<int:pipe_id>/", views.board, name="board"),
    path("pipes/<int:pipe_id>/changes/", views.board_changes, name="board_changes"),
    path("pipes/<int:pipe_id>/phases/<int:phase_id>/cards/", views.column_more, name="column_more"),
    path(card, views.card_detail_view, name="card_detail"),
    path(card + "move/", views.card_move, name="card_move"),
    path(card + "fields/<slug:key>/", views.card_field, name="card_field"),
    path(card + "assignees/", views.card_assign, name="card_assign"),
    path(card + "labels/", views.card_labels, name="card_labels"),
    path(card + "due/", views.card_due, name="card_due"),
    path(card + "comments/", views.card_comment, name="card_comment"),
    path(card + "files/", views.card_attach, name="card_attach"),
    path(card + "retry/", views.card_retry, name="card_retry"),
    path(card + "files/<int:file_id>/", views.card_file, name="card_file"),
]
