"""URLs of the rail's designer pages (namespace "rail_design"), mounted under /design/ beside pipes.designer."""

from django.urls import path

from . import views

app_name = "rail_design"

urlpatterns = [
    path("pipes/<int:pipe_id>/steps/", views.steps, name="steps"),
    path("pipes/<int:pipe_id>/steps/new/", views.step_new, name="step_new"),
    path("pipes/<int:pipe_id>/steps/<int:step_id>/", views.step_edit, name="step_edit"),
    path("pipes/<int:pipe_id>/steps/<int:step_id>/delete/", views.step_delete, name="step_delete"),
    path("pipes/<int:pipe_id>/steps/<int:step_id>/move/", views.step_move, name="step_move"),
    path("pipes/<int:pipe_id>/steps/<int:step_id>/dry-run/", views.step_dry_run, name="step_dry_run"),
    path("pipes/<int:pipe_id>/agents/", views.agents, name="agents"),
    path("pipes/<int:pipe_id>/agents/new/", views.agent_new, name="agent_new"),
    path("pipes/<int:pipe_id>/agents/<int:agent_id>/", views.agent_edit, name="agent_edit"),
    path("pipes/<int:pipe_id>/agents/<int:agent_id>/delete/", views.agent_delete, name="agent_delete"),
    path("pipes/<int:pipe_id>/hosts/", views.hosts, name="hosts"),
    path("pipes/<int:pipe_id>/hosts/<int:host_id>/delete/", views.host_delete, name="host_delete"),
]
