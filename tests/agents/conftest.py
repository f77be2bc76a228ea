"""The agents' tests use the rail's fixtures: scripted servers and short timeouts."""

from tests.orchestrator.conftest import external, ollama, openai, rail_settings  # noqa: F401


def compressed_pdf(pages: list[bytes] | None = None, *, pages_of: int = 0, stream_bytes: int = 0) -> bytes:
    """A PDF built by hand: one page per text of `pages`, or `pages_of` pages whose Flate-compressed
    content stream expands to `stream_bytes` of text-drawing operators (a small file, huge streams)."""
    import io
    import zlib

    if pages is None:
        line = b"BT /F1 12 Tf 72 712 Td (Hello world text here) Tj ET\n"
        pages = [line * (stream_bytes // len(line))] * pages_of
    else:
        pages = [b"BT /F1 12 Tf 72 712 Td (" + text + b") Tj ET\n" for text in pages]
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>"
        % (b" ".join(b"%d 0 R" % (4 + 2 * i) for i in range(len(pages))), len(pages)),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, content in enumerate(pages):
        packed = zlib.compress(content, 9)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (5 + 2 * i)
        )
        objects.append(
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(packed), packed)
        )
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.writelines(b"%010d 00000 n \n" % offset for offset in offsets)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()
