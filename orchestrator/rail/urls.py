"""URLs of the rail, mounted at /rail/ by orchestrator/urls.py:
path("rail/", include("orchestrator.rail.urls"))."""

from django.urls import path

from . import views

app_name = "rail"

urlpatterns = [
    path("runs/<int:run_id>/", views.run_detail, name="run"),
    path("runs/<int:run_id>/retry/", views.run_retry, name="run_retry"),
    path("pipes/<int:pipe_id>/costs/", views.pipe_costs, name="pipe_costs"),
    path("health/", views.health, name="health"),
]
