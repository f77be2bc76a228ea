"""The Brazilian Portuguese translation: pages and service errors speak it, and the catalogue is complete."""

from __future__ import annotations

import gettext
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import translation

from pipes.services import Actor, CardError, card_create
from tests.personas import PASSWORD, good_start_values

PO_FILE = Path(settings.BASE_DIR) / "locale" / "pt_BR" / "LC_MESSAGES" / "django.po"
MO_FILE = PO_FILE.with_suffix(".mo")


@pytest.fixture
def portuguese(client):
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "pt-br"
    return client


def _sign_in(client, user) -> None:
    assert client.login(username=user.username, password=PASSWORD)


def test_it_renders_the_login_page_in_portuguese(portuguese):
    body = portuguese.get("/accounts/login/").content.decode()

    assert '<html lang="pt-br">' in body
    assert "Entrar no Trilho" in body
    assert "Senha" in body
    assert "Sign in to Trilho" not in body


def test_it_renders_the_home_page_and_top_bar_in_portuguese(portuguese, world):
    _sign_in(portuguese, world.admin)  # an admin reviews too: the top bar shows every entry

    body = portuguese.get("/").content.decode()

    assert "Seus pipes" in body
    assert "Minhas solicitações" in body
    assert "Caixa de entrada" in body
    assert "Sair" in body
    assert "Your pipes" not in body


def test_it_renders_the_portal_in_portuguese(portuguese, world):
    _sign_in(portuguese, world.requester)

    body = portuguese.get("/portal/").content.decode()

    assert f"Como podemos ajudar, {world.requester.first_name}?" in body
    assert "Buscar formulários" in body
    assert "How can we help" not in body


def test_it_renders_the_inbox_in_portuguese(portuguese, world):
    _sign_in(portuguese, world.reviewer)

    body = portuguese.get("/inbox/").content.decode()

    assert "Caixa de entrada" in body
    assert "Atalhos de teclado" in body
    assert "Keyboard shortcuts" not in body


def test_it_switches_language_through_the_top_bar_form(client, world):
    _sign_in(client, world.member)

    response = client.post("/i18n/setlang/", {"language": "pt-br", "next": "/"})

    assert response.status_code == 302
    assert client.cookies[settings.LANGUAGE_COOKIE_NAME].value == "pt-br"
    assert "Seus pipes" in client.get("/").content.decode()


def test_it_keeps_english_without_a_language_choice(client, world):
    _sign_in(client, world.member)

    body = client.get("/", HTTP_ACCEPT_LANGUAGE="en").content.decode()

    assert "Your pipes" in body
    assert "My requests" in body


def test_it_gives_card_errors_in_portuguese_while_portuguese_is_active(world):
    values = good_start_values()
    del values["item"]

    with translation.override("pt-br"), pytest.raises(CardError) as caught:
        card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=values)

    assert caught.value.errors["item"] == ["Este campo é obrigatório."]
    assert "Este campo é obrigatório." in caught.value.message


# ----- the catalogue itself

_ENTRY_SPLIT = re.compile(r"\n\s*\n")


def _unquote(lines: list[str]) -> str:
    """Join the quoted pieces of one msgid/msgstr, undoing the PO escapes."""
    text = "".join(line[line.index('"') + 1 : line.rindex('"')] for line in lines)
    return re.sub(r'\\(["\\nt])', lambda m: {"n": "\n", "t": "\t"}.get(m[1], m[1]), text)


def _po_entries(path: Path) -> list[dict]:
    """Each live entry of a .po file as {flags, msgid, msgid_plural, msgstr[...]} (obsolete #~ entries skipped)."""
    entries = []
    for block in _ENTRY_SPLIT.split(path.read_text(encoding="utf-8")):
        lines = [line for line in block.strip().splitlines() if line and not line.startswith("#~")]
        entry: dict = {"flags": "", "parts": {}}
        current = None
        for line in lines:
            if line.startswith("#,"):
                entry["flags"] += line[2:]
            elif line.startswith("#"):
                continue
            elif line.startswith('"'):
                entry["parts"][current].append(line)
            else:
                current = line.split(" ", 1)[0]
                entry["parts"][current] = [line]
        if "msgid" in entry["parts"]:
            entries.append({"flags": entry["flags"], **{k: _unquote(v) for k, v in entry["parts"].items()}})
    return entries


def test_it_translates_every_message_of_the_catalogue():
    entries = [e for e in _po_entries(PO_FILE) if e["msgid"]]  # the header has an empty msgid
    assert len(entries) > 1000

    fuzzy = [e["msgid"] for e in entries if "fuzzy" in e["flags"]]
    untranslated = [
        e["msgid"]
        for e in entries
        if not all(value.strip() for key, value in e.items() if key.startswith("msgstr"))
    ]
    assert fuzzy == []
    assert untranslated == []


def test_it_keeps_the_placeholders_of_every_message():
    placeholder = re.compile(r"%\(\w+\)[sdrf]|%\(\w+\)\.\d+f|%\(\w+\)0\d+d|%[sd]")
    wrong = []
    for e in _po_entries(PO_FILE):
        if not e["msgid"]:
            continue
        if "msgid_plural" in e:
            wanted = set(placeholder.findall(e["msgid_plural"]))
            if set(placeholder.findall(e["msgstr[1]"])) != wanted:
                wrong.append(e["msgid"])
        elif sorted(placeholder.findall(e["msgstr"])) != sorted(placeholder.findall(e["msgid"])):
            wrong.append(e["msgid"])
    assert wrong == []


def test_it_ships_the_compiled_catalogue_up_to_date():
    # A fresh machine (and the Docker image) has no gettext tools, so the .mo is committed: it must match the .po.
    with MO_FILE.open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    stale = []
    for e in _po_entries(PO_FILE):
        if not e["msgid"]:
            continue
        context = e.get("msgctxt")
        if "msgid_plural" in e:
            args = (e["msgid"], e["msgid_plural"], 5)
            got = compiled.npgettext(context, *args) if context else compiled.ngettext(*args)
            if got != e["msgstr[1]"]:
                stale.append(e["msgid"])
        elif (compiled.pgettext(context, e["msgid"]) if context else compiled.gettext(e["msgid"])) != e[
            "msgstr"
        ]:
            stale.append(e["msgid"])
    assert stale == []
    with translation.override("pt-br"):
        assert translation.gettext("Sign in") == "Entrar"
        assert translation.gettext("My requests") == "Minhas solicitações"
