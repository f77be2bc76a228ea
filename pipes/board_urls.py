"""URLs of the board: home, a pipe's board, the card panel and their HTMX endpoints."""

from django.urls import path

from .views import board

card = "pipes/<int:pipe_id>/cards/<int:card_id>/"

urlpatterns = [
    path("", board.home, name="home"),
    path("pipes/<int:pipe_id>/", board.board, name="board"),
    path("pipes/<int:pipe_id>/changes/", board.board_changes, name="board_changes"),
    path("pipes/<int:pipe_id>/phases/<int:phase_id>/cards/", board.column_more, name="column_more"),
    path(card, board.card_detail_view, name="card_detail"),
    path(card + "move/", board.card_move, name="card_move"),
    path(card + "fields/<slug:key>/", board.card_field, name="card_field"),
    path(card + "assignees/", board.card_assign, name="card_assign"),
    path(card + "labels/", board.card_labels, name="card_labels"),
    path(card + "due/", board.card_due, name="card_due"),
    path(card + "comments/", board.card_comment, name="card_comment"),
    path(card + "files/", board.card_attach, name="card_attach"),
    path(card + "files/<int:file_id>/", board.card_file, name="card_file"),
]
