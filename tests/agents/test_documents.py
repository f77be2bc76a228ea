"""Text extraction from attachments: within limits on pages, characters, time and stream size, stored
with the file, and said to be cut where it was (notes for the preview, a line in the prompt)."""

from __future__ import annotations

import time

from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import translation

from agents.context import AgentInput, prompt_build
from agents.documents import (
    CUT_CHARS,
    CUT_PAGES,
    CUT_STREAM,
    CUT_TIME,
    Document,
    Limits,
    cut_notes,
    document_extract,
    document_read,
    document_text_request,
    text_extract,
)
from agents.models import DocumentText
from pipes.services import Actor, card_attach_files, card_create
from tests.agents.conftest import compressed_pdf
from tests.orchestrator.conftest import make_agent
from tests.personas import good_start_values

ROOMY = Limits(pages=50, chars=20000, seconds=10, stream_bytes=1_000_000)


def attach(world, name: str, data: bytes):
    card = card_create(actor=Actor.for_user(world.member), pipe=world.pipe, values=good_start_values())
    upload = SimpleUploadedFile(name, data, content_type="application/pdf")
    return card_attach_files(
        actor=Actor.for_user(world.member), card=card, uploads=[upload], field_key="quote"
    )[0]


def test_it_stops_a_small_pdf_of_huge_compressed_streams_quickly_and_says_it_was_cut():
    bomb = compressed_pdf(pages_of=6, stream_bytes=5_000_000)  # ~90 KB on disk, 30 MB of content
    assert len(bomb) < 150_000
    started = time.monotonic()
    extraction = text_extract(bomb, kind="pdf", limits=ROOMY)
    assert time.monotonic() - started < 3  # unlimited, pypdf spent about a minute on it
    assert extraction.cuts == (CUT_STREAM,) and extraction.pages_read == 0 and extraction.pages_total == 6


def test_it_stops_at_the_time_limit_inside_a_page():
    # Streams under the size limit that take about 2 s each to interpret (13 s for all, unlimited).
    slow = compressed_pdf(pages_of=6, stream_bytes=600_000)
    started = time.monotonic()
    extraction = text_extract(
        slow, kind="pdf", limits=Limits(pages=50, chars=10**9, seconds=0.3, stream_bytes=1_000_000)
    )
    assert time.monotonic() - started < 4  # the limit, plus at most the parse of one stream
    assert CUT_TIME in extraction.cuts and extraction.pages_read < 6


def test_it_reads_only_up_to_the_page_limit():
    pdf = compressed_pdf([b"one", b"two", b"three", b"four", b"five"])
    extraction = text_extract(
        pdf, kind="pdf", limits=Limits(pages=2, chars=20000, seconds=10, stream_bytes=1_000_000)
    )
    assert extraction.text == "one\ntwo" and extraction.cuts == (CUT_PAGES,)
    assert (extraction.pages_read, extraction.pages_total) == (2, 5)


def test_it_keeps_only_up_to_the_character_limit():
    pdf = compressed_pdf([b"abcdefgh", b"ijklmnop"])
    extraction = text_extract(
        pdf, kind="pdf", limits=Limits(pages=50, chars=5, seconds=10, stream_bytes=1_000_000)
    )
    assert extraction.text == "abcde" and extraction.cuts == (CUT_CHARS,)


def test_it_reads_a_whole_small_pdf_without_a_cut():
    extraction = text_extract(compressed_pdf([b"Quote 118", b"twelve chairs"]), kind="pdf", limits=ROOMY)
    assert extraction.text == "Quote 118\ntwelve chairs" and extraction.cuts == ()


def test_it_stores_the_text_with_the_file_and_reads_it_without_opening_the_file_again(world, media_root):
    card_file = attach(world, "quote.pdf", compressed_pdf([b"one", b"two", b"three"]))
    stored = document_extract(
        card_file, limits=Limits(pages=2, chars=20000, seconds=10, stream_bytes=1_000_000)
    )
    assert stored.status == DocumentText.Status.DONE and stored.cuts == [CUT_PAGES]
    default_storage.delete(card_file.file.name)
    document = document_read(card_file)
    assert document.text == "one\ntwo" and document.truncated and document.cuts == (CUT_PAGES,)
    assert document.trace()["cuts"] == [CUT_PAGES]


def test_it_asks_a_worker_once_while_a_request_is_recent_and_again_when_it_is_stale(world, media_root, clock):
    card_file = attach(world, "quote.pdf", compressed_pdf([b"one"]))
    assert document_text_request(card_file) is True
    assert document_text_request(card_file) is False
    clock.advance(minutes=5)
    assert document_text_request(card_file) is True


def test_it_explains_each_cut_in_a_note():
    translation.activate("en")
    document = Document(
        1, "quote.pdf", "0" * 64, "abc", True, cuts=(CUT_PAGES, CUT_STREAM), pages_read=2, pages_total=9
    )
    notes = cut_notes(document)
    assert notes[0] == "Only the first 2 of 9 pages were read."
    assert notes[1] == "Pages whose content expands past 1 MB were skipped."


def test_it_tells_the_model_that_a_document_was_cut(world):
    agent = make_agent(world.pipe)
    document = Document(
        1, "quote.pdf", "0" * 64, "one\ntwo", True, cuts=(CUT_PAGES,), pages_read=2, pages_total=5
    )
    _, prompt = prompt_build(agent=agent, view=AgentInput(phase="Triage", documents=[document]), schema={})
    assert "(incomplete: Only the first 2 of 5 pages were read.)\none\ntwo" in prompt
