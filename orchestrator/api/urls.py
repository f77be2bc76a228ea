"""The REST API's URLs, mounted at /api/v1/ (namespace "api": one name per operation, plus openapi-json and openapi-view)."""

from django.urls import path

from .v1 import api

urlpatterns = [path("", api.urls)]
