"""Sign-in throttling and security headers."""

import pytest
from django.core.cache import cache

from tests.personas import PASSWORD


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    yield
    cache.clear()


def test_it_refuses_sign_in_after_five_failures_even_with_the_right_password(world, client):
    for _ in range(5):
        response = client.post("/accounts/login/", {"username": "member", "password": "wrong"})
        assert response.status_code == 200 and "do not match" in response.text
    response = client.post("/accounts/login/", {"username": "member", "password": PASSWORD})
    assert response.status_code == 429
    assert "Too many failed sign-in attempts" in response.text
    assert "_auth_user_id" not in client.session


def test_it_signs_in_normally_and_forgets_failures(world, client):
    client.post("/accounts/login/", {"username": "member", "password": "wrong"})
    response = client.post("/accounts/login/", {"username": "member", "password": PASSWORD})
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(world.member.pk)


def test_it_sends_a_content_security_policy_allowing_only_own_scripts(world, client):
    response = client.get("/accounts/login/")
    policy = response.headers["Content-Security-Policy"]
    assert (
        "script-src 'self'" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    )
    assert "frame-ancestors 'none'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in response.text  # no inline script on our pages
