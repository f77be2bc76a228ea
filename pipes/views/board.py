"""Board pages: home, the kanban board and the card panel."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_GET

from ..roles import organizations_for_user, pipes_for_user


@login_required
@require_GET
def home(request):
    pipes = pipes_for_user(request.user).select_related("organization")
    return render(
        request, "pipes/home.html", {"pipes": pipes, "organizations": organizations_for_user(request.user)}
    )
