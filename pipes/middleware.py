"""Request middleware of pipes: access answers remembered for one request, times shown in the
organization's time zone (stored in UTC everywhere), and no NUL character let in."""

import zoneinfo

from django.conf import settings
from django.http import HttpResponseBadRequest
from django.utils import timezone
from django.utils.translation import gettext as _

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


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class NullCharacterMiddleware:
    """Refuse (400) a request whose path, query or form carries a NUL character.

    PostgreSQL keeps no NUL in text or JSON, so such a value would fail deep inside whichever
    query took it (a 500), and no person types one. Only form bodies are read here, as Django
    parses them anyway; a raw body (JSON) is left to its view.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if self._carries_nul(request):
            return HttpResponseBadRequest(
                _("The request contains a null character, which is not accepted."),
                content_type="text/plain; charset=utf-8",
            )
        return self.get_response(request)

    @staticmethod
    def _carries_nul(request) -> bool:
        parts = [request.path]
        for key, values in request.GET.lists():
            parts += [key, *values]
        if request.method == "POST" and request.content_type in FORM_TYPES:
            if _small(request):
                # Read the raw body first (Django keeps it) so a view that reads request.body
                # after us (the API's JSON parsing) still can; a big upload is parsed as a stream.
                request.body  # noqa: B018
            for key, values in request.POST.lists():
                parts += [key, *values]
            parts += [f.name or "" for _key, files in request.FILES.lists() for f in files]
        return any("\x00" in part for part in parts)


def _small(request) -> bool:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return False
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return limit is None or length <= limit
