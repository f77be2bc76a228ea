"""URLs of the designer (namespace "designer"), mounted under /design/."""

from django.urls import path

from . import fields, phases, views
from .members import member, members

app_name = "designer"

urlpatterns = [
    path("", views.index, name="index"),
    path("new/", views.create, name="create"),
    path("import/", views.import_definition, name="import"),
    path("pipes/<int:pipe_id>/", views.pipe_design, name="pipe"),
    path("pipes/<int:pipe_id>/export/", views.export_definition, name="export"),
    path("pipes/<int:pipe_id>/preview/", fields.preview, name="preview"),
    # phases
    path("pipes/<int:pipe_id>/phases/add/", phases.phase_add, name="phase_add"),
    path("pipes/<int:pipe_id>/phases/order/", phases.phases_order, name="phases_order"),
    path("pipes/<int:pipe_id>/phases/<int:phase_id>/", phases.phase_edit, name="phase_edit"),
    path("pipes/<int:pipe_id>/phases/<int:phase_id>/rename/", phases.phase_rename, name="phase_rename"),
    path("pipes/<int:pipe_id>/phases/<int:phase_id>/delete/", phases.phase_delete, name="phase_delete"),
    # fields
    path("pipes/<int:pipe_id>/fields/add/", fields.field_add, name="field_add"),
    path("pipes/<int:pipe_id>/fields/palette/", fields.field_palette, name="field_palette"),
    path("pipes/<int:pipe_id>/fields/order/", fields.fields_order, name="fields_order"),
    path("pipes/<int:pipe_id>/fields/<int:field_id>/", fields.field_edit, name="field_edit"),
    path("pipes/<int:pipe_id>/fields/<int:field_id>/delete/", fields.field_delete, name="field_delete"),
    path(
        "pipes/<int:pipe_id>/fields/<int:field_id>/condition-row/",
        fields.condition_row,
        name="condition_row",
    ),
    # members and roles (pipes.designer.members)
    path("pipes/<int:pipe_id>/members/", members, name="members"),
    path("pipes/<int:pipe_id>/members/<int:user_id>/", member, name="member"),
]
