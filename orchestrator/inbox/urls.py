"""URLs of the reviewer inbox, mounted at /inbox/ by orchestrator/urls.py:
path("inbox/", include("orchestrator.inbox.urls"))."""

from django.urls import path

from . import views

app_name = "inbox"

urlpatterns = [
    path("", views.inbox, name="index"),
    path("bulk/", views.bulk_approve, name="bulk_approve"),
    path("tasks/<int:task_id>/", views.task_detail, name="task"),
    path("tasks/<int:task_id>/decide/", views.task_decide, name="decide"),
    path("tasks/<int:task_id>/fields/", views.task_fields, name="fields"),
    path("tasks/<int:task_id>/delegate/", views.task_delegate, name="delegate"),
    path("tasks/<int:task_id>/files/<int:file_id>/preview/", views.file_preview, name="file_preview"),
]
