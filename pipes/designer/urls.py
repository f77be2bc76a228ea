"""URLs of the designer (namespace "designer"), mounted under /design/."""

from django.urls import path

from . import views
from .members import member, members

app_name = "designer"

urlpatterns = [
    path("", views.index, name="index"),
    path("new/", views.create, name="create"),
    path("import/", views.import_definition, name="import"),
    path("pipes/<int:pipe_id>/", views.pipe_design, name="pipe"),
    path("pipes/<int:pipe_id>/export/", views.export_definition, name="export"),
    # members and roles (pipes.designer.members)
    path("pipes/<int:pipe_id>/members/", members, name="members"),
    path("pipes/<int:pipe_id>/members/<int:user_id>/", member, name="member"),
]
