"""Links Trilho writes (tracking links, emails) use SITE_URL, else the address the request came to."""

import pytest
from django.core import mail
from django.core.cache import cache

from pipes import siteaddress
from pipes.models import Card
from pipes.siteaddress import CACHE_KEY, site_url
from tests.personas import PASSWORD


@pytest.fixture
def no_site_url(settings, monkeypatch):
    monkeypatch.setattr(siteaddress, "_remembered", "")  # this process wrote nothing to the cache yet
    settings.SITE_URL = ""
    settings.ALLOWED_HOSTS = ["testserver", "trilho.lan"]
    cache.delete(CACHE_KEY)


def _file_request(client, world, **extra):
    client.login(username="requester", password=PASSWORD)
    values = {"f-item": "Laptop for Ana", "f-amount": "4500.00", "f-requester_email": "ana@example.com"}
    return client.post(f"/portal/{world.pipe.pk}/new/", values, **extra)


def test_it_writes_the_tracking_link_with_the_address_the_request_came_to(
    client, world, no_site_url, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = _file_request(client, world, HTTP_HOST="trilho.lan:8101")
    assert response.status_code == 302
    card = Card.objects.get()
    assert f"http://trilho.lan:8101/portal/t/{card.tracking_token}/" in mail.outbox[0].body


def test_it_uses_the_last_address_a_request_came_to_outside_requests(client, world, no_site_url):
    client.get("/accounts/login/", HTTP_HOST="trilho.lan:8101")
    assert site_url() == "http://trilho.lan:8101"  # what a worker's email uses


def test_it_prefers_site_url_when_it_is_set(client, world, settings, django_capture_on_commit_callbacks):
    settings.SITE_URL = "https://trilho.example.com"
    settings.ALLOWED_HOSTS = ["testserver", "trilho.lan"]
    with django_capture_on_commit_callbacks(execute=True):
        _file_request(client, world, HTTP_HOST="trilho.lan:8101")
    card = Card.objects.get()
    assert f"https://trilho.example.com/portal/t/{card.tracking_token}/" in mail.outbox[0].body
