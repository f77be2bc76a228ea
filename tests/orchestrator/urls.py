"""The project's URLs with the rail mounted at /rail/, as orchestrator/urls.py will have it."""

from django.urls import include, path

from orchestrator.urls import urlpatterns as project_urls

urlpatterns = [path("rail/", include("orchestrator.rail_urls")), *project_urls]
