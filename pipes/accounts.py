"""Sign-in with throttling, counted per account and per address separately.

An account with 5 failures in 15 minutes is refused from any address (guessing one person's
password); an address is refused only after many more (guessing across accounts), so someone
mistyping their password never locks out the colleagues behind the same office NAT or proxy.
"""

from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.backends import ModelBackend
from django.contrib.sessions.backends import db as db_sessions
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext as _

from .security import Throttle, client_address

WINDOW_SECONDS = 15 * 60
FAILURES_PER_ACCOUNT = Throttle("login-account", limit=5, window=WINDOW_SECONDS)
FAILURES_PER_ADDRESS = Throttle("login-address", limit=50, window=WINDOW_SECONDS)


class ThrottledLoginView(auth_views.LoginView):
    """Django's login view, refusing attempts for an account or from an address with too many recent failures."""

    def _account(self) -> str:
        return (self.request.POST.get("username") or "").strip().lower()

    def _throttled(self) -> bool:
        return FAILURES_PER_ACCOUNT.blocked(self._account()) or FAILURES_PER_ADDRESS.blocked(
            client_address(self.request)
        )

    def post(self, request, *args, **kwargs):
        if self._throttled():
            form = self.get_form()
            form.errors.clear()
            context = self.get_context_data(form=form, throttled=True)
            context["throttle_message"] = _(
                "Too many failed sign-in attempts. Wait 15 minutes and try again, or ask an administrator to reset "
                "your password."
            )
            return self.render_to_response(context, status=429)
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        FAILURES_PER_ACCOUNT.hit(self._account())
        FAILURES_PER_ADDRESS.hit(client_address(self.request))
        return super().form_invalid(form)

    def form_valid(self, form):
        # Only the account's count is forgotten: signing in to one's own account must not reset the
        # address's count of failures against others.
        FAILURES_PER_ACCOUNT.reset(self._account())
        return super().form_valid(form)


# ---------------------------------------------------------------- every request's two reads, in plain SQL
# A signed-in request reads its session and its user before anything else. Django's stores ask the ORM,
# whose compiling of those two one-row lookups cost more than PostgreSQL spends answering them; these
# read the same rows with the same conditions (the session unexpired, the user found and active).


class SessionStore(db_sessions.SessionStore):
    """Database sessions (SESSION_ENGINE = "pipes.accounts"), the session row read in plain SQL."""

    def _get_session_from_db(self):
        model = self.get_model_class()
        key = self.session_key
        if not key:
            self._session_key = None
            return None
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT session_data FROM {model._meta.db_table} WHERE session_key = %s AND expire_date > %s",
                [key, now],
            )
            row = cursor.fetchone()
        if row is None:
            self._session_key = None
            return None
        return model(session_key=key, session_data=row[0])


class AccountBackend(ModelBackend):
    """Django's ModelBackend, the signed-in user read in plain SQL on every request."""

    def get_user(self, user_id):
        User = get_user_model()
        try:
            pk = User._meta.pk.to_python(user_id)
        except ValidationError:
            return None
        fields = User._meta.concrete_fields
        columns = ", ".join(f'"{f.column}"' for f in fields)
        with connection.cursor() as cursor:
            cursor.execute(
                f'SELECT {columns} FROM {User._meta.db_table} WHERE "{User._meta.pk.column}" = %s', [pk]
            )
            row = cursor.fetchone()
        if row is None:
            return None
        values = [
            f.from_db_value(v, None, connection) if hasattr(f, "from_db_value") else v
            for f, v in zip(fields, row, strict=True)
        ]
        user = User.from_db(connection.alias, [f.attname for f in fields], values)
        return user if self.user_can_authenticate(user) else None
