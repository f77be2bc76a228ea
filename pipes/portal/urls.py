"""URLs of the request portal, mounted at /portal/ by pipes.urls."""

from django.urls import path

from . import (
    mail,  # noqa: F401  connects the requester status emails (see PipesConfig.ready)
    views,
)

app_name = "portal"

urlpatterns = [
    path("", views.home, name="home"),
    path("<int:pipe_id>/new/", views.start_form, name="start_form"),
    path("<int:pipe_id>/new/fields/", views.start_fields_view, name="start_fields"),
    path("requests/", views.my_requests, name="my_requests"),
    path("requests/<int:card_id>/", views.request_detail, name="request"),
    path("requests/<int:card_id>/submitted/", views.submitted, name="submitted"),
    path("requests/<int:card_id>/answer/", views.request_answer, name="request_answer"),
    path("requests/<int:card_id>/comment/", views.request_comment, name="request_comment"),
    path("requests/<int:card_id>/files/<int:file_id>/", views.request_file, name="request_file"),
    path("f/<slug:org_slug>/<slug:pipe_slug>/", views.public_form, name="public_form"),
    path("f/<slug:org_slug>/<slug:pipe_slug>/fields/", views.public_fields, name="public_fields"),
    path("t/<str:token>/", views.tracking, name="tracking"),
    path("t/<str:token>/submitted/", views.public_submitted, name="public_submitted"),
]
