"""Document parsing on real files built here: PDFs by fpdf2 and pypdf, DOCX by python-docx.

Every bad input must raise ParseError, never another exception: `pytest.raises(ParseError)`
lets any other type through as a failure. Messages are checked for the words a user needs.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import docx
import pytest
from fpdf import FPDF
from pypdf import PdfReader, PdfWriter

from mtai.rag.parsing import (
    Block,
    ContentLimits,
    DocumentKind,
    LimitExceeded,
    ParsedDocument,
    ParseError,
    parse,
)

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
PAGES = [
    "Quarterly Report\n\nRevenue grew by ten percent in the third quarter.",
    "Costs fell because the new warehouse opened in March.",
    "Outlook: the board expects steady growth next year.",
]


def make_pdf(pages: list[str], title: str | None = "Quarterly Report") -> bytes:
    pdf = FPDF()
    if title:
        pdf.set_title(title)
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 10, text)
    return bytes(pdf.output())


def encrypt(pdf: bytes, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_docx() -> bytes:
    document = docx.Document()
    document.core_properties.title = "Operations Manual"
    document.add_heading("Manual", level=0)
    document.add_paragraph("This manual explains operations.")
    document.add_heading("Installation", level=1)
    document.add_paragraph("Download the installer.")
    document.add_heading("On Linux", level=2)
    document.add_paragraph("Use the package manager.")
    table = document.add_table(rows=2, cols=2)
    for (row, col), text in {(0, 0): "Setting", (0, 1): "Default", (1, 0): "port"}.items():
        table.cell(row, col).text = text
    table.cell(1, 1).text = "8080"
    document.add_heading("Usage", level=1)
    document.add_paragraph("Start the service.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def zip_of(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


def noise(seed: str, size: int) -> bytes:
    """Deterministic pseudo-random bytes (the same damage on every run)."""
    return hashlib.shake_256(seed.encode()).digest(size)


def refusal(data: bytes, filename: str | None = None, content_type: str | None = None) -> str:
    with pytest.raises(ParseError) as caught:
        parse(data, filename=filename, content_type=content_type)
    message = str(caught.value)
    assert message.endswith("."), message  # a complete sentence
    return message


def texts(document: ParsedDocument) -> list[str]:
    return [block.text for block in document.blocks]


# --- PDF --------------------------------------------------------------------------------------


def test_pdf_pages_and_title() -> None:
    document = parse(make_pdf(PAGES), filename="report.pdf", content_type="application/pdf")
    assert document.kind is DocumentKind.PDF
    assert document.title == "Quarterly Report"
    assert [block.page for block in document.blocks] == [1, 2, 3]
    assert "Revenue grew by ten percent" in document.blocks[0].text
    assert "Quarterly Report" in document.blocks[0].text
    assert "new warehouse opened in March" in document.blocks[1].text
    assert "steady growth" in document.blocks[2].text
    assert all(block.heading_path == () for block in document.blocks)


def test_pdf_without_title_metadata() -> None:
    document = parse(make_pdf(PAGES[:1], title=None), filename="x.pdf", content_type=None)
    assert document.title is None


def test_pdf_with_user_password_is_refused() -> None:
    message = refusal(encrypt(make_pdf(PAGES), "s3cret"), "locked.pdf")
    assert "encrypted" in message
    assert "password" in message


def test_pdf_encrypted_with_empty_user_password_parses() -> None:
    document = parse(encrypt(make_pdf(PAGES), ""), filename="r.pdf", content_type=None)
    assert [block.page for block in document.blocks] == [1, 2, 3]
    assert "steady growth" in document.blocks[2].text


@pytest.mark.parametrize("keep", [0.9, 0.5, 0.1])
def test_truncated_pdf_is_refused_as_damaged(keep: float) -> None:
    pdf = make_pdf(PAGES)
    message = refusal(pdf[: int(len(pdf) * keep)], "report.pdf")
    assert "damaged" in message
    assert "PDF" in message


def test_pdf_without_text_layer_mentions_ocr() -> None:
    message = refusal(make_pdf([""]), "scan.pdf")
    assert "OCR is not supported" in message
    assert "no text" in message


def test_pdf_errors_keep_the_library_exception_as_cause() -> None:
    pdf = make_pdf(PAGES)
    with pytest.raises(ParseError) as caught:
        parse(pdf[: len(pdf) // 2], filename="report.pdf", content_type=None)
    assert caught.value.__cause__ is not None


# --- DOCX -------------------------------------------------------------------------------------


def test_docx_headings_paragraphs_and_table() -> None:
    document = parse(make_docx(), filename="manual.docx", content_type=None)
    assert document.kind is DocumentKind.DOCX
    assert document.title == "Operations Manual"
    assert document.blocks == [
        Block("This manual explains operations.", ("Manual",), None),
        Block("Download the installer.", ("Manual", "Installation"), None),
        Block("Use the package manager.", ("Manual", "Installation", "On Linux"), None),
        Block("Setting | Default\nport | 8080", ("Manual", "Installation", "On Linux"), None),
        Block("Start the service.", ("Manual", "Usage"), None),
    ]


def test_docx_title_falls_back_to_title_paragraph() -> None:
    document = docx.Document()
    document.add_heading("Handbook", level=0)
    document.add_paragraph("Welcome.")
    out = io.BytesIO()
    document.save(out)
    assert parse(out.getvalue(), filename="h.docx", content_type=None).title == "Handbook"


def test_docx_without_text_is_refused() -> None:
    out = io.BytesIO()
    docx.Document().save(out)
    assert "no text" in refusal(out.getvalue(), "blank.docx")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(make_docx()[:3000], id="truncated"),
        pytest.param(b"PK\x03\x04" + noise("zip", 2000), id="random-zip"),
    ],
)
def test_damaged_docx_is_refused(data: bytes) -> None:
    message = refusal(data, "manual.docx")
    assert "damaged" in message
    assert ".docx" in message


def test_docx_with_broken_xml_is_refused() -> None:
    with zipfile.ZipFile(io.BytesIO(make_docx())) as original:
        members = {name: original.read(name) for name in original.namelist()}
    members["word/document.xml"] = b"<w:document><w:body><w:p>"
    with pytest.raises(ParseError, match="damaged") as caught:
        parse(zip_of(members), filename="manual.docx", content_type=None)
    assert caught.value.__cause__ is not None


def test_zip_without_word_document_is_not_a_docx() -> None:
    message = refusal(zip_of({"notes.txt": b"hello"}), "manual.docx")
    assert "is named manual.docx but its content is not a Word document" in message
    assert "ZIP archive" in message


def test_other_office_zip_is_named() -> None:
    message = refusal(zip_of({"xl/workbook.xml": b"<workbook/>"}), None)
    assert "Excel workbook" in message
    assert "Supported types" in message


def test_ole2_file_is_refused_as_encrypted_or_legacy() -> None:
    message = refusal(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500), "old.doc")
    assert "password-protected" in message
    assert ".doc" in message
    assert "save it as .docx" in message.lower()


# --- HTML and Markdown ------------------------------------------------------------------------

HTML = """<!DOCTYPE html>
<html><head><title>  Product   Guide </title><style>p { color: red }</style></head>
<body>
<nav><a href="/">Home</a> Navigation menu</nav>
<script>var secret = "do not index";</script>
<h1>Guide</h1>
<p>Welcome to   the <b>product</b>
guide.</p>
<h2>Install</h2>
<ul><li>Download it</li><li>Run <code>setup</code></li></ul>
<pre>make install
  --prefix=/opt</pre>
<h2>Limits</h2>
<table><tr><th>Plan</th><th>Requests</th></tr><tr><td>Free</td><td>100</td></tr></table>
<blockquote>Quoted advice<br>on two lines</blockquote>
<noscript>Enable JavaScript</noscript>
<footer>Copyright footer</footer>
</body></html>
"""


def test_html_blocks_headings_and_dropped_elements() -> None:
    document = parse(HTML.encode(), filename="guide.html", content_type=None)
    assert document.kind is DocumentKind.HTML
    assert document.title == "Product Guide"
    assert document.blocks == [
        Block("Welcome to the product guide.", ("Guide",), None),
        Block("Download it", ("Guide", "Install"), None),
        Block("Run setup", ("Guide", "Install"), None),
        Block("make install\n  --prefix=/opt", ("Guide", "Install"), None),
        Block("Plan | Requests\nFree | 100", ("Guide", "Limits"), None),
        Block("Quoted advice\non two lines", ("Guide", "Limits"), None),
    ]
    everything = " ".join(texts(document))
    for dropped in ("do not index", "Navigation", "Enable JavaScript", "Copyright", "color"):
        assert dropped not in everything


def test_deeply_nested_html_does_not_crash() -> None:
    data = b"<html><body>" + b"<div>" * 50_000 + b"deep text" + b"</div>" * 50_000
    assert "deep text" in " ".join(texts(parse(data, filename="x.html", content_type=None)))


MARKDOWN = """---
title: front matter is skipped
---
User Guide
==========

Intro paragraph
on two lines.

Installation
------------

Run this:

```bash
# not a heading
make install

make test
```

### Linux

- first item
- second item

# Appendix #

Last words.
"""


def test_markdown_setext_atx_and_fenced_code() -> None:
    document = parse(MARKDOWN.encode(), filename="guide.md", content_type=None)
    assert document.kind is DocumentKind.MARKDOWN
    assert document.title == "User Guide"
    assert document.blocks == [
        Block("Intro paragraph\non two lines.", ("User Guide",), None),
        Block("Run this:", ("User Guide", "Installation"), None),
        Block(
            "```bash\n# not a heading\nmake install\n\nmake test\n```",
            ("User Guide", "Installation"),
            None,
        ),
        Block("- first item\n- second item", ("User Guide", "Installation", "Linux"), None),
        Block("Last words.", ("Appendix",), None),
    ]


def test_markdown_unclosed_fence_runs_to_the_end() -> None:
    document = parse(b"# T\n\n~~~\n# code\n\nmore", filename="a.md", content_type=None)
    assert document.blocks == [Block("~~~\n# code\n\nmore", ("T",), None)]


# --- CSV and JSON -----------------------------------------------------------------------------


def test_csv_with_semicolons() -> None:
    data = b"name;city;note\nAda;London;\n\n;;\nLinus;Helsinki;likes, commas\n"
    document = parse(data, filename="people.csv", content_type=None)
    assert document.kind is DocumentKind.CSV
    assert texts(document) == [
        "name: Ada; city: London\nname: Linus; city: Helsinki; note: likes, commas"
    ]


def test_csv_rows_are_grouped_without_splitting_rows() -> None:
    rows = "\n".join(f"{i},value {i}" for i in range(45))
    document = parse(f"id,value\n{rows}\n".encode(), filename="t.csv", content_type="text/csv")
    lines = [block.text.split("\n") for block in document.blocks]
    assert [len(group) for group in lines] == [20, 20, 5]
    assert lines[0][0] == "id: 0; value: value 0"
    assert lines[2][-1] == "id: 44; value: value 44"


def test_csv_that_cannot_be_read_is_refused() -> None:
    # An unbalanced quote swallows the rest of the file into one oversized field.
    message = refusal(b'a,b\n1,"unclosed\n' + b"x" * 200_000, "data.csv")
    assert "CSV" in message
    assert "line" in message


def test_csv_with_header_only_is_refused() -> None:
    assert "no data rows" in refusal(b"a,b,c\n", "empty.csv")


def test_nested_json_is_flattened() -> None:
    value = {"service": {"ports": [80, {"tls": 443}], "name": "api"}, "debug": False, "x": None}
    document = parse(json.dumps(value).encode(), filename="config.json", content_type=None)
    assert document.kind is DocumentKind.JSON
    assert texts(document) == [
        "service.ports[0]: 80\nservice.ports[1].tls: 443\nservice.name: api\ndebug: false\nx: null"
    ]


def test_invalid_json_names_line_and_column() -> None:
    message = refusal(b'{\n  "a": 1,\n  "b": \n}', "config.json")
    assert "line 4, column 1" in message
    assert "JSON" in message


def test_deeply_nested_json_does_not_crash() -> None:
    deep = b"[" * 900 + b'"bottom"' + b"]" * 900
    document = parse(deep, filename="deep.json", content_type=None)
    assert document.blocks[0].text.endswith("[0]: bottom")
    message = refusal(b"[" * 100_000 + b"]" * 100_000, "deeper.json")
    assert "nested too deeply" in message


def test_json_without_values_is_refused() -> None:
    assert "no values" in refusal(b"{}", "empty.json")


# --- Text, encodings and type detection -------------------------------------------------------


def test_plain_text_paragraphs() -> None:
    data = b"First paragraph\nsame one.\n\n  \nSecond.\r\n\r\nThird."
    document = parse(data, filename=None, content_type=None)
    assert document.kind is DocumentKind.TEXT
    assert texts(document) == ["First paragraph\nsame one.", "Second.", "Third."]


def test_utf16_with_bom() -> None:
    data = "Grüße aus Köln.\n\nZweiter Absatz.".encode("utf-16")
    assert data.startswith((b"\xff\xfe", b"\xfe\xff"))
    document = parse(data, filename="notes.txt", content_type=None)
    assert texts(document) == ["Grüße aus Köln.", "Zweiter Absatz."]


def test_utf8_with_bom() -> None:
    document = parse(b"\xef\xbb\xbfHello.", filename="notes.txt", content_type=None)
    assert texts(document) == ["Hello."]


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b'{"a": 1}', DocumentKind.JSON),
        (b"  [1, 2]", DocumentKind.JSON),
        (b"<!DOCTYPE html><p>Hi</p>", DocumentKind.HTML),
        (b"<html><body><p>Hi</p></body></html>", DocumentKind.HTML),
        (b"Intro\n\n## Section\n\nBody", DocumentKind.MARKDOWN),
        (b"{not json} just braces", DocumentKind.TEXT),
        (b"#hashtag is not a heading", DocumentKind.TEXT),
    ],
)
def test_text_kind_is_sniffed_without_hints(data: bytes, kind: DocumentKind) -> None:
    assert parse(data, filename=None, content_type=None).kind is kind


@pytest.mark.parametrize(
    ("filename", "content_type", "kind"),
    [
        ("a.txt", None, DocumentKind.TEXT),
        ("a.LOG", None, DocumentKind.TEXT),
        ("a.md", None, DocumentKind.MARKDOWN),
        ("a.htm", None, DocumentKind.HTML),
        ("a.csv", None, DocumentKind.CSV),
        (None, "text/markdown; charset=utf-8", DocumentKind.MARKDOWN),
        (None, "text/html", DocumentKind.HTML),
        (None, "text/plain", DocumentKind.TEXT),
        ("a.unknown", "text/csv", DocumentKind.CSV),
    ],
)
def test_extension_or_content_type_chooses_text_kind(
    filename: str | None, content_type: str | None, kind: DocumentKind
) -> None:
    # Sniffed alone this would be Markdown; the label decides.
    data = b"# Heading\n\na,b\n1,2\n"
    assert parse(data, filename=filename, content_type=content_type).kind is kind


def test_pdf_content_wins_over_unknown_extension() -> None:
    assert parse(make_pdf(PAGES), filename="scan.bin", content_type=None).kind is DocumentKind.PDF


@pytest.mark.parametrize("data", [b"", b"   \n\t  \r\n", "  \n ".encode("utf-16"), b"\xef\xbb\xbf"])
def test_empty_and_whitespace_only_files_are_refused(data: bytes) -> None:
    assert "empty" in refusal(data, "notes.txt")


def test_png_named_pdf() -> None:
    message = refusal(PNG, "photo.pdf")
    assert "is named photo.pdf but its content is not a PDF" in message
    assert "PNG image" in message


def test_plain_text_named_pdf() -> None:
    message = refusal(b"Just some notes.", "report.pdf")
    assert message.startswith(
        "The file is named report.pdf but its content is not a PDF (it looks like text)."
    )


def test_text_sent_as_pdf_content_type() -> None:
    message = refusal(b"Just some notes.", None, "application/pdf")
    assert "was sent as application/pdf" in message
    assert "not a PDF" in message


def test_pdf_named_txt() -> None:
    message = refusal(make_pdf(PAGES), "notes.txt")
    assert "is named notes.txt but its content is not text (it looks like a PDF)" in message


def test_pdf_named_docx() -> None:
    message = refusal(make_pdf(PAGES), "notes.docx")
    assert "is not a Word document (it looks like a PDF)" in message


def test_docx_named_pdf() -> None:
    assert "it looks like a Word document" in refusal(make_docx(), "manual.pdf")


def test_markdown_text_named_txt_is_fine() -> None:
    document = parse(b"# Title\n\nBody.", filename="readme.txt", content_type=None)
    assert document.kind is DocumentKind.TEXT


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (PNG, "PNG image"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG image"),
        (b"GIF89a\x01\x00\x01\x00", "GIF image"),
        (bytes(range(256)) * 8, "binary data"),
        (b"\x1f\x8b\x08\x00\x00\x00\x00\x00", "gzip archive"),
        (b"text\x00with a NUL", "binary data"),
    ],
)
def test_unsupported_binary_is_named(data: bytes, expected: str) -> None:
    message = refusal(data)
    assert expected in message
    assert "Supported types are PDF, Word (.docx)" in message


def test_non_utf8_text_asks_for_utf8() -> None:
    message = refusal("Café crème".encode("latin-1"), "menu.txt")
    assert "UTF-8" in message
    assert "encoding" in message


def test_invalid_utf16_is_refused() -> None:
    assert "UTF-16" in refusal(b"\xff\xfe" + b"\x00\xd8" + b"a", "notes.txt")


def test_nul_characters_never_reach_blocks() -> None:
    # PostgreSQL text cannot store NUL; pypdf returns it when a PDF draws one.
    document = parse(make_pdf(["before\x00after"]), filename="x.pdf", content_type=None)
    assert texts(document) == ["beforeafter"]


# --- Robustness: damaged inputs raise ParseError or parse, nothing else -------------------------


def _valid_samples() -> list[tuple[str, bytes]]:
    return [
        ("report.pdf", make_pdf(PAGES)),
        ("manual.docx", make_docx()),
        ("guide.html", HTML.encode()),
        ("guide.md", MARKDOWN.encode()),
        ("data.json", b'{"a": [1, 2, {"b": "c"}]}'),
        ("data.csv", b"a,b\n1,2\n3,4\n"),
    ]


def damaged_variants(data: bytes, seed: str) -> list[bytes]:
    """Truncations at every tenth, and copies with ten bytes overwritten, twenty times."""
    variants = [data[: len(data) * k // 10] for k in range(1, 10)]
    for round_ in range(20):
        damage = noise(f"{seed}-{round_}", 40)
        mutated = bytearray(data)
        for i in range(0, 40, 4):
            position = int.from_bytes(damage[i : i + 3], "big") % len(data)
            mutated[position] = damage[i + 3]
        variants.append(bytes(mutated))
    return variants


def outcome(data: bytes, filename: str) -> str:
    """'parsed', or the ParseError's message; any other exception fails the calling test."""
    try:
        document = parse(data, filename=filename, content_type=None)
    except ParseError as exc:
        return str(exc)
    return "parsed" if document.blocks else "parsed without blocks"


@pytest.mark.parametrize(("filename", "data"), _valid_samples())
def test_damaged_files_raise_only_parse_error(filename: str, data: bytes) -> None:
    outcomes = [outcome(variant, filename) for variant in damaged_variants(data, filename)]
    assert all(result == "parsed" or result.endswith(".") for result in outcomes), outcomes
    assert any(result != "parsed" for result in outcomes)  # the damage was noticed somewhere


# --- Content limits (the sandbox sets them; here they are checked in-process) -----------------


def test_character_limit_counts_text_and_headings() -> None:
    markdown = b"# A heading of 24 chars!\n\nbody"
    with pytest.raises(LimitExceeded, match=r"more than 20 characters.*MTAI_PARSE_MAX_CHARS"):
        parse(markdown, filename="a.md", content_type=None, limits=ContentLimits(max_chars=20))
    assert parse(markdown, filename="a.md", content_type=None, limits=ContentLimits(max_chars=28))


def test_flat_json_stops_at_the_character_limit() -> None:
    data = json.dumps(list(range(1_000_000))).encode()
    with pytest.raises(LimitExceeded, match="MTAI_PARSE_MAX_CHARS"):
        parse(data, filename="n.json", content_type=None, limits=ContentLimits(max_chars=10_000))


def test_pdf_page_limit() -> None:
    with pytest.raises(
        LimitExceeded, match=r"3 pages; the limit is 2 \(setting MTAI_PARSE_MAX_PAGES"
    ):
        parse(
            make_pdf(PAGES), filename="r.pdf", content_type=None, limits=ContentLimits(max_pages=2)
        )


def test_docx_unpacked_size_limit_reads_the_directory_only() -> None:
    limits = ContentLimits(max_decompressed_bytes=1000)
    with pytest.raises(LimitExceeded, match=r"unpacks to \d+ bytes.*DECOMPRESSED_BYTES"):
        parse(make_docx(), filename="m.docx", content_type=None, limits=limits)


def test_docx_compression_ratio_counts_only_above_a_mebibyte() -> None:
    # A small document compresses several times over: well under the ratio's 1 MiB threshold.
    limits = ContentLimits(max_compression_ratio=2)
    assert parse(make_docx(), filename="m.docx", content_type=None, limits=limits).blocks
    document = docx.Document()
    document.add_paragraph("word " * 400_000)  # 2 MB of XML that compresses many times over
    out = io.BytesIO()
    document.save(out)
    with pytest.raises(LimitExceeded, match=r"times its size.*MTAI_PARSE_MAX_COMPRESSION_RATIO"):
        parse(out.getvalue(), filename="big.docx", content_type=None, limits=limits)
