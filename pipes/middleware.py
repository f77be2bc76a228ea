"""Request middleware of pipes: access answers remembered for one request, and times shown in the
organization's time zone (stored in UTC everywhere)."""

import zoneinfo

from django.utils import timezone

from .models import Organization
from .roles import access_cache


class AccessCacheMiddleware:
    """Each user's access to a pipe is worked out once per request (see pipes.roles.access_cache)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with access_cache():
            return self.get_response(request)


class OrganizationTimezoneMiddleware:
    """Activate the time zone of the signed-in person's organization (the first, by name)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        tz_name = None
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            tz_name = request.session.get("trilho_tz")
            if tz_name is None:
                org = Organization.objects.filter(memberships__user=user).order_by("name").first()
                tz_name = org.time_zone if org else "UTC"
                request.session["trilho_tz"] = tz_name
        if tz_name:
            timezone.activate(zoneinfo.ZoneInfo(tz_name))
        else:
            timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
