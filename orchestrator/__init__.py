"""Trilho's Django project and the rail that runs each phase's steps."""

from .celery import app as celery_app

__all__ = ["celery_app"]
