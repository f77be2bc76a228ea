"""URLs of the request portal, mounted at /portal/ by pipes.urls."""

from django.urls import path

from . import portal_mail  # noqa: F401  connects the requester status emails (see PipesConfig.ready)
from .views import portal

app_name = "portal"

urlpatterns = [
    path("", portal.home, name="home"),
    path("<int:pipe_id>/new/", portal.start_form, name="start_form"),
    path("<int:pipe_id>/new/fields/", portal.start_fields_view, name="start_fields"),
    path("requests/", portal.my_requests, name="my_requests"),
    path("requests/<int:card_id>/", portal.request_detail, name="request"),
    path("requests/<int:card_id>/submitted/", portal.submitted, name="submitted"),
    path("requests/<int:card_id>/answer/", portal.request_answer, name="request_answer"),
    path("requests/<int:card_id>/comment/", portal.request_comment, name="request_comment"),
    path("requests/<int:card_id>/files/<int:file_id>/", portal.request_file, name="request_file"),
    path("f/<slug:org_slug>/<slug:pipe_slug>/", portal.public_form, name="public_form"),
    path("f/<slug:org_slug>/<slug:pipe_slug>/fields/", portal.public_fields, name="public_fields"),
    path("t/<str:token>/", portal.tracking, name="tracking"),
    path("t/<str:token>/submitted/", portal.public_submitted, name="public_submitted"),
]
