"""The main menu's knowledge of who uses what: `{% user_areas as areas %}` (computed once per request)."""

from django import template

from ..selectors import UserAreas
from ..selectors import user_areas as user_areas_for

register = template.Library()


@register.simple_tag(takes_context=True)
def user_areas(context) -> UserAreas:
    request = context.get("request")
    user = context.get("user")
    if request is None or user is None:
        return UserAreas(boards=False, reviews=False)
    cached = getattr(request, "_trilho_user_areas", None)
    if cached is None:
        cached = request._trilho_user_areas = user_areas_for(user=user)
    return cached
