"""URLs of the governance pages, mounted at /governance/ (namespace "governance")."""

from django.urls import path

from . import views

app_name = "governance"

urlpatterns = [
    path("", views.index, name="index"),
    path("pipes/<int:pipe_id>/sla/", views.sla_report_view, name="sla_report"),
    path("pipes/<int:pipe_id>/audit/", views.pipe_audit, name="pipe_audit"),
    path("pipes/<int:pipe_id>/retention/", views.retention, name="retention"),
    path("cards/<int:card_id>/audit/", views.card_audit, name="card_audit"),
    path("orgs/<slug:org_slug>/audit/", views.org_audit, name="org_audit"),
    path("orgs/<slug:org_slug>/privacy/", views.privacy, name="privacy"),
]
