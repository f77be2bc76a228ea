"""The floor of a card move, served beside Trilho by bench/board.py: what Django itself costs.

Django 5.2 with the stock middleware (database sessions, auth, CSRF), a signed-in user, and per move
one row lock, one update and one event insert in a transaction, then a small card-tile fragment
rendered by Django's template engine. Nothing of Trilho's: a Trilho move costs its own logic above
this. It runs on the bench's database (its users and session table, and two tables of its own that
bench/board.py creates: FLOOR_TABLES), under gunicorn: `gunicorn floor:application` with
FLOOR_DATABASE_URL set.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from django.conf import settings


def _database() -> dict:
    url = urlsplit(
        os.environ.get("FLOOR_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/trilho_bench_board")
    )
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": url.path.lstrip("/"),
        "USER": url.username or "postgres",
        "PASSWORD": url.password or "",
        "HOST": url.hostname or "127.0.0.1",
        "PORT": str(url.port or 5432),
        "CONN_MAX_AGE": 60,
    }


TILE = (
    '<article class="card" id="card-{{ c.id }}" data-version="{{ c.version }}">'
    "<h3>{{ c.title }}</h3><dl>{% for k, v in fields %}<dt>{{ k }}</dt><dd>{{ v }}</dd>{% endfor %}</dl>"
    '<footer>{{ c.phase }} · {{ now|date:"Y-m-d H:i" }}</footer></article>'
    '<span id="count-{{ c.phase }}" hx-swap-oob="true">{{ count }}</span>'
)


def configure() -> None:
    if settings.configured:
        return
    settings.configure(
        DEBUG=False,
        SECRET_KEY="floor-only-" + "f" * 40,
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        DATABASES={"default": _database()},
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions"],
        MIDDLEWARE=[
            "django.middleware.security.SecurityMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "OPTIONS": {
                    "loaders": [
                        (
                            "django.template.loaders.cached.Loader",
                            [("django.template.loaders.locmem.Loader", {"tile.html": TILE})],
                        )
                    ],
                },
            }
        ],
        # Trilho's password hasher settings do not matter: the bench signs in once per client.
        USE_I18N=True,
        USE_TZ=True,
    )


configure()

import django  # noqa: E402

django.setup()

from django.contrib.auth import authenticate, login  # noqa: E402
from django.contrib.auth.decorators import login_required  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.middleware.csrf import get_token  # noqa: E402
from django.shortcuts import render  # noqa: E402
from django.urls import path  # noqa: E402
from django.utils import timezone  # noqa: E402
from django.views.decorators.http import require_POST  # noqa: E402


def sign_in(request):
    """GET: a CSRF cookie. POST: sign in (username, password), 302 like Django's login view."""
    if request.method == "POST":
        user = authenticate(request, username=request.POST["username"], password=request.POST["password"])
        if user is None:
            return HttpResponse(status=403)
        login(request, user)
        return HttpResponse(status=302, headers={"Location": "/"})
    return HttpResponse(f'<input name="csrfmiddlewaretoken" value="{get_token(request)}">')


@require_POST
@login_required
def move(request, pk):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT phase, version FROM floor_card WHERE id = %s FOR UPDATE", [pk])
        phase, version = cursor.fetchone()
        cursor.execute(
            "UPDATE floor_card SET phase = %s, version = version + 1 WHERE id = %s", [(phase + 1) % 6, pk]
        )
        cursor.execute(
            "INSERT INTO floor_event (card_id, kind, body) VALUES (%s, 'moved', %s)", [pk, str(phase)]
        )
    card = {"id": pk, "version": version + 1, "title": f"Card {pk}", "phase": (phase + 1) % 6}
    fields = [("Amount", "R$ 1.234,00"), ("Supplier", "ACME Ltda"), ("Due", "2026-12-31")]
    context = {"c": card, "fields": fields, "now": timezone.now(), "count": 1667}
    return render(request, "tile.html", context)


urlpatterns = [path("accounts/login/", sign_in), path("m/<int:pk>", move)]
application = get_wsgi_application()
