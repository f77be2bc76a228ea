"""The webhooks' URLs, mounted at /webhooks/ (namespace "webhooks")."""

from django.urls import path

from . import views

app_name = "webhooks"

urlpatterns = [
    path("in/<str:key>/", views.inbound, name="inbound"),
    path("pipes/<int:pipe_id>/", views.deliveries, name="deliveries"),
    path("pipes/<int:pipe_id>/deliveries/<int:delivery_id>/resend/", views.resend, name="resend"),
    path("pipes/<int:pipe_id>/outbound/<int:webhook_id>/enable/", views.enable, name="enable"),
]
