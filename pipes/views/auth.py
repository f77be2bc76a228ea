"""Sign-in with throttling: repeated failures from one address or for one username are slowed down."""

from django.contrib.auth import views as auth_views
from django.utils.translation import gettext as _

from ..security import Throttle, client_address

LOGIN_FAILURES = Throttle("login", limit=5, window=15 * 60)


class ThrottledLoginView(auth_views.LoginView):
    """Django's login view, refusing further attempts after 5 failures in 15 minutes."""

    def _keys(self):
        username = (self.request.POST.get("username") or "").strip().lower()
        return [f"ip:{client_address(self.request)}", f"user:{username}"]

    def post(self, request, *args, **kwargs):
        if any(LOGIN_FAILURES.blocked(key) for key in self._keys()):
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
        for key in self._keys():
            LOGIN_FAILURES.hit(key)
        return super().form_invalid(form)

    def form_valid(self, form):
        LOGIN_FAILURES.reset(f"user:{(self.request.POST.get('username') or '').strip().lower()}")
        return super().form_valid(form)
