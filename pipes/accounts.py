"""Sign-in with throttling, counted per account and per address separately.

An account with 5 failures in 15 minutes is refused from any address (guessing one person's
password); an address is refused only after many more (guessing across accounts), so someone
mistyping their password never locks out the colleagues behind the same office NAT or proxy.
"""

from django.contrib.auth import views as auth_views
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
