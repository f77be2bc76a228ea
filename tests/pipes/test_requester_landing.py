"""People who only file requests land in the portal and see only the menu entries they can use."""

from tests.personas import PASSWORD


def _page(client, who, path="/"):
    client.login(username=who, password=PASSWORD)
    return client.get(path, follow=True)


def test_it_sends_a_requester_from_home_to_the_portal(client, world):
    response = _page(client, "requester")
    assert response.redirect_chain[-1][0] == "/portal/"


def test_it_shows_a_requester_only_the_portal_and_their_requests_in_the_menu(client, world):
    html = _page(client, "requester").content.decode()
    nav = html.split('class="mainnav"', 1)[1].split("</nav>", 1)[0]
    assert 'href="/portal/"' in nav and 'href="/portal/requests/"' in nav
    assert 'href="/inbox/"' not in nav and ">Pipes<" not in nav


def test_it_keeps_the_pipes_home_and_the_inbox_for_a_reviewer(client, world):
    response = _page(client, "reviewer")
    assert response.redirect_chain == []
    nav = response.content.decode().split('class="mainnav"', 1)[1].split("</nav>", 1)[0]
    assert ">Pipes<" in nav and 'href="/inbox/"' in nav


def test_it_shows_a_member_the_pipes_but_not_the_inbox(client, world):
    nav = _page(client, "member").content.decode().split('class="mainnav"', 1)[1].split("</nav>", 1)[0]
    assert ">Pipes<" in nav and 'href="/inbox/"' not in nav
