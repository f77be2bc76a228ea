from django.urls import path

from .views import board

urlpatterns = [
    path("", board.home, name="home"),
]
