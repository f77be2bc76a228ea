"""Sign-in throttling and security headers."""

import pytest
from django.core.cache import cache

from pipes.security import client_address
from tests.personas import PASSWORD

LOGIN = "/accounts/login/"


def fail(client, username: str, address: str = "127.0.0.1"):
    response = client.post(LOGIN, {"username": username, "password": "wrong"}, REMOTE_ADDR=address)
    assert response.status_code == 200 and "do not match" in response.text


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


def test_it_lets_a_colleague_sign_in_from_the_same_address_after_someone_elses_failures(world, client):
    for _ in range(5):
        fail(client, "member", "203.0.113.7")
    response = client.post(LOGIN, {"username": "admin", "password": PASSWORD}, REMOTE_ADDR="203.0.113.7")
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(world.admin.pk)


def test_it_throttles_an_attacked_account_from_any_address(world, client):
    for n in range(5):
        fail(client, "member", f"198.51.100.{n}")
    response = client.post(LOGIN, {"username": "member", "password": PASSWORD}, REMOTE_ADDR="192.0.2.99")
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


def test_it_throttles_an_address_that_fails_across_many_accounts(world, client):
    for n in range(50):
        fail(client, f"guess{n}", "203.0.113.8")
    refused = client.post(LOGIN, {"username": "member", "password": PASSWORD}, REMOTE_ADDR="203.0.113.8")
    assert refused.status_code == 429
    elsewhere = client.post(LOGIN, {"username": "member", "password": PASSWORD}, REMOTE_ADDR="192.0.2.1")
    assert elsewhere.status_code == 302


def test_it_reads_the_client_address_from_the_configured_proxy_header(rf, settings):
    settings.TRILHO_CLIENT_IP_HEADER = "X-Real-IP"
    request = rf.get("/", HTTP_X_REAL_IP="203.0.113.5", REMOTE_ADDR="10.0.0.2")
    assert client_address(request) == "203.0.113.5"
    settings.TRILHO_CLIENT_IP_HEADER = ""
    assert client_address(request) == "10.0.0.2"  # a header nobody configured is not believed


def test_it_ignores_forwarded_entries_the_client_wrote_itself(rf, settings):
    settings.TRILHO_CLIENT_IP_HEADER = "HTTP_X_FORWARDED_FOR"
    forged = rf.get("/", HTTP_X_FORWARDED_FOR="192.0.2.66, 203.0.113.5", REMOTE_ADDR="10.0.0.2")
    assert client_address(forged) == "203.0.113.5"  # the entry our one proxy appended
    settings.TRILHO_TRUSTED_PROXY_COUNT = 2  # a CDN in front of that proxy
    behind_cdn = rf.get("/", HTTP_X_FORWARDED_FOR="192.0.2.66, 203.0.113.5, 198.51.100.1")
    assert client_address(behind_cdn) == "203.0.113.5"


def test_it_sends_a_content_security_policy_allowing_only_own_scripts(world, client):
    response = client.get("/accounts/login/")
    policy = response.headers["Content-Security-Policy"]
    assert (
        "script-src 'self'" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    )
    assert "frame-ancestors 'none'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in response.text  # no inline script on our pages
