"""URLs of the governance pages, mounted at /governance/ (namespace "governance")."""

from django.urls import path

from .views import governance

app_name = "governance"

urlpatterns = [
    path("", governance.index, name="index"),
    path("pipes/<int:pipe_id>/sla/", governance.sla_report_view, name="sla_report"),
    path("pipes/<int:pipe_id>/audit/", governance.pipe_audit, name="pipe_audit"),
    path("pipes/<int:pipe_id>/retention/", governance.retention, name="retention"),
    path("cards/<int:card_id>/audit/", governance.card_audit, name="card_audit"),
    path("orgs/<slug:org_slug>/audit/", governance.org_audit, name="org_audit"),
    path("orgs/<slug:org_slug>/privacy/", governance.privacy, name="privacy"),
]
