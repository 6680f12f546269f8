"""Uploaded bytes to paragraph-level blocks of text, or a ParseError the uploader can act on.

Pure: no I/O beyond the bytes given. The type comes from the content first (magic bytes); the
filename and content type only choose among text formats, and a label that contradicts the
content (a "report.pdf" holding text) is refused rather than guessed around, because the user
most likely picked the wrong file. Every failure on bad input is a ParseError whose message is a
complete sentence for the end user; the library's own exception is kept as its __cause__.
Everything is linear in the size of the input: it runs on uploads of tens of megabytes.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum

import docx
from bs4 import BeautifulSoup
from bs4.element import NavigableString, PageElement, PreformattedString, Tag
from docx.table import Table
from docx.text.paragraph import Paragraph
from pypdf import PdfReader


class DocumentKind(StrEnum):
    TEXT = "text"
    MARKDOWN = "markdown"
    HTML = "html"
    PDF = "pdf"
    DOCX = "docx"
    CSV = "csv"
    JSON = "json"


class ParseError(Exception):
    """A document that cannot be ingested; str(exc) is a complete sentence for the end user
    saying what is wrong and what to do (e.g. 'The PDF is encrypted; remove its password and
    upload it again.')."""


@dataclass(frozen=True)
class Block:
    """A paragraph-level piece of text in reading order."""

    text: str
    heading_path: tuple[str, ...]  # enclosing headings, outermost first ("Guide", "Install")
    page: int | None  # 1-based page for PDFs, else None


@dataclass(frozen=True)
class ParsedDocument:
    kind: DocumentKind
    blocks: list[Block]
    title: str | None  # <title>, PDF metadata, DOCX core properties, first Markdown H1


_SUPPORTED = (
    "Supported types are PDF, Word (.docx), plain text, Markdown, HTML, CSV and JSON files."
)
_EMPTY = "The file is empty (it contains no text); choose the right file and upload it again."
_NO_TEXT = {
    DocumentKind.PDF: (
        "The PDF has no text layer (it is probably scanned, or made of images); OCR is not "
        "supported, so upload a PDF with selectable text."
    ),
    DocumentKind.DOCX: "The Word document contains no text; add content and upload it again.",
    DocumentKind.CSV: "The CSV file has no data rows below its header; upload a file with data.",
    DocumentKind.JSON: "The JSON file contains no values; upload a file with data.",
}
_MISLABELLED = (
    "Check that you chose the right file, or rename it to match its content, and upload it again."
)
_DAMAGED_PDF = (
    "The PDF is damaged or incomplete and cannot be read; open it in a PDF viewer, save or "
    "export it again, and upload the new file."
)
_DAMAGED_DOCX = (
    "The Word document is damaged and cannot be read; open it in Word, save it again as .docx, "
    "and upload the new file."
)
_ENCRYPTED_PDF = (
    "The PDF is encrypted with a password; remove the password (for example by printing it to "
    "a new PDF) and upload it again."
)

# What a kind is called in messages.
_NAMES = {
    DocumentKind.PDF: "a PDF",
    DocumentKind.DOCX: "a Word document",
    DocumentKind.TEXT: "text",
}

_EXTENSIONS = {
    ".pdf": DocumentKind.PDF,
    ".docx": DocumentKind.DOCX,
    ".txt": DocumentKind.TEXT,
    ".text": DocumentKind.TEXT,
    ".log": DocumentKind.TEXT,
    ".md": DocumentKind.MARKDOWN,
    ".markdown": DocumentKind.MARKDOWN,
    ".html": DocumentKind.HTML,
    ".htm": DocumentKind.HTML,
    ".csv": DocumentKind.CSV,
    ".json": DocumentKind.JSON,
}
_CONTENT_TYPES = {
    "application/pdf": DocumentKind.PDF,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": DocumentKind.DOCX,
    "text/plain": DocumentKind.TEXT,
    "text/markdown": DocumentKind.MARKDOWN,
    "text/x-markdown": DocumentKind.MARKDOWN,
    "text/html": DocumentKind.HTML,
    "application/xhtml+xml": DocumentKind.HTML,
    "text/csv": DocumentKind.CSV,
    "application/json": DocumentKind.JSON,
}

_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP = (b"PK\x03\x04", b"PK\x05\x06")
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"{\\rtf", "an RTF document"),
)
_ZIP_MEMBERS = (
    ("xl/workbook.xml", "an Excel workbook (.xlsx)"),
    ("ppt/presentation.xml", "a PowerPoint presentation (.pptx)"),
)
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16", "UTF-16"),
)
# Bytes that text files do not contain: C0 controls other than tab, newlines, form feed, escape.
_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\r\f\x1b")

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_JSON_START = re.compile(r"\s*[\[{]")
_HTML_START = re.compile(r"\s*(?:<\?xml[^>]*>\s*)?<(?:!doctype\s+html|html)[\s>]", re.IGNORECASE)
_MARKDOWN_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+\S", re.MULTILINE)

# Rows or JSON lines per block: enough context per passage, and few enough that the chunker
# rarely has to split a block (it never splits inside a row).
_LINES_PER_BLOCK = 20
_CSV_SNIFF_CHARS = 32_768


def parse(data: bytes, *, filename: str | None, content_type: str | None) -> ParsedDocument:
    """The blocks of an uploaded file; ParseError (only) if it cannot be ingested."""
    if not data or data.isspace():
        raise ParseError(_EMPTY)
    label = _label(filename, content_type)
    content = _identify(data)
    _check_label(content, label)
    if content.kind is DocumentKind.PDF:
        document = _parse_pdf(data)
    elif content.kind is DocumentKind.DOCX:
        document = _parse_docx(data)
    else:
        document = _parse_text(content.text, label.kind if label else None)
    if not document.blocks:
        raise ParseError(
            _NO_TEXT.get(document.kind, "The file contains no text; upload a file with content.")
        )
    return document


# --- What the file claims to be, and what it is ---------------------------------------------


@dataclass(frozen=True)
class _Label:
    kind: DocumentKind
    source: str  # for messages: "is named report.pdf", "was sent as application/pdf"


@dataclass(frozen=True)
class _Content:
    # PDF, DOCX, TEXT for any decodable text (the label then picks the format), None if unusable.
    kind: DocumentKind | None
    looks_like: str  # for messages: "a PDF", "text", "a PNG image"
    advice: str = _SUPPORTED  # what to do instead, when the content is unusable
    text: str = ""
    cause: Exception | None = None
    # The family of an unreadable file (a broken ZIP may be a .docx): when its label names that
    # family, the problem is the damage, not a wrong label.
    damaged: DocumentKind | None = None


def _label(filename: str | None, content_type: str | None) -> _Label | None:
    """The kind the upload claims: its extension if known, else its content type."""
    if filename:
        dot = filename.rfind(".")
        kind = _EXTENSIONS.get(filename[dot:].lower()) if dot >= 0 else None
        if kind is not None:
            return _Label(kind, f"is named {filename}")
    if content_type:
        kind = _CONTENT_TYPES.get(content_type.split(";")[0].strip().lower())
        if kind is not None:
            return _Label(kind, f"was sent as {content_type}")
    return None


def _family(kind: DocumentKind) -> DocumentKind:
    """PDF and DOCX are their own families; all text formats are TEXT."""
    return kind if kind in (DocumentKind.PDF, DocumentKind.DOCX) else DocumentKind.TEXT


def _check_label(content: _Content, label: _Label | None) -> None:
    if label is not None and _family(label.kind) not in (content.kind, content.damaged):
        advice = content.advice if content.kind is None else _MISLABELLED
        raise ParseError(
            f"The file {label.source} but its content is not {_NAMES[_family(label.kind)]} "
            f"(it looks like {content.looks_like}). {advice}"
        ) from content.cause
    if content.kind is None:
        raise ParseError(
            f"The file looks like {content.looks_like}, which cannot be ingested. {content.advice}"
        ) from content.cause


def _identify(data: bytes) -> _Content:
    if data.startswith(b"%PDF-"):
        return _Content(DocumentKind.PDF, "a PDF")
    if data.startswith(_ZIP):
        return _identify_zip(data)
    if data.startswith(_OLE2):
        return _Content(
            None,
            "a password-protected Office file or a legacy Word .doc file",
            advice="Save it as .docx without a password and upload it again.",
        )
    for signature, looks_like in _SIGNATURES:
        if data.startswith(signature):
            return _Content(None, looks_like)
    return _decode(data)


def _identify_zip(data: bytes) -> _Content:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        return _Content(
            None,
            "a damaged Word document or ZIP archive",
            advice="Open it in Word, save it again as .docx, and upload the new file.",
            cause=exc,
            damaged=DocumentKind.DOCX,
        )
    if "word/document.xml" in names:
        return _Content(DocumentKind.DOCX, _NAMES[DocumentKind.DOCX])
    for member, looks_like in _ZIP_MEMBERS:
        if member in names:
            return _Content(None, looks_like)
    return _Content(None, "a ZIP archive")


def _decode(data: bytes) -> _Content:
    """Text in UTF-8 (with or without BOM) or UTF-16 with BOM; anything else is unusable."""
    for bom, codec, name in _BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(codec)
            except UnicodeDecodeError as exc:
                return _Content(
                    None,
                    f"text that is not valid {name}",
                    advice="Save it again as UTF-8 and upload the new file.",
                    cause=exc,
                    damaged=DocumentKind.TEXT,
                )
            break
    else:
        if b"\x00" in data:
            return _Content(None, "binary data of an unknown type")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            if any(byte in _CONTROL_BYTES for byte in data[:4096]):
                return _Content(None, "binary data of an unknown type", cause=exc)
            return _Content(
                None,
                "text in an encoding other than UTF-8",
                advice="Save it as UTF-8 and upload it again.",
                cause=exc,
                damaged=DocumentKind.TEXT,
            )
    if "\x00" in text:
        return _Content(None, "binary data of an unknown type")
    if not text or text.isspace():
        raise ParseError(_EMPTY)
    return _Content(DocumentKind.TEXT, "text", text=text)


# --- Shared construction ----------------------------------------------------------------------


class _Builder:
    """Blocks in reading order under the headings open at the current point of the document."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self.title: str | None = None
        self._headings: list[tuple[int, str]] = []  # (level, text), outermost first

    def heading(self, level: int, text: str) -> None:
        """A heading closes those at its level and deeper, then encloses what follows."""
        while self._headings and self._headings[-1][0] >= level:
            self._headings.pop()
        text = _squash(text)
        if text:
            self._headings.append((level, text))

    def add(self, text: str, page: int | None = None) -> None:
        # PostgreSQL text cannot hold NUL, which PDF and DOCX extraction can produce.
        text = text.replace("\x00", "").strip()
        if text:
            self.blocks.append(Block(text, tuple(t for _, t in self._headings), page))

    def add_grouped(self, lines: Iterable[str]) -> None:
        """Lines (rows, JSON values) a few per block, never splitting a line."""
        group: list[str] = []
        for line in lines:
            group.append(line)
            if len(group) == _LINES_PER_BLOCK:
                self.add("\n".join(group))
                group = []
        self.add("\n".join(group))

    def document(self, kind: DocumentKind) -> ParsedDocument:
        return ParsedDocument(kind, self.blocks, self.title)


def _squash(text: str) -> str:
    """Whitespace runs to single spaces, ends trimmed."""
    return " ".join(text.split())


# --- Text formats -----------------------------------------------------------------------------


def _parse_text(text: str, kind: DocumentKind | None) -> ParsedDocument:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if kind is None:
        if _JSON_START.match(text):
            try:
                return _parse_json(text)
            except ParseError:
                pass  # starts like JSON but is not: sniff on
        kind = _sniff(text)
    return _TEXT_PARSERS[kind](text)


def _sniff(text: str) -> DocumentKind:
    if _HTML_START.match(text):
        return DocumentKind.HTML
    if _MARKDOWN_HEADING.search(text):
        return DocumentKind.MARKDOWN
    return DocumentKind.TEXT


def _parse_plain(text: str) -> ParsedDocument:
    builder = _Builder()
    for paragraph in _PARAGRAPH_BREAK.split(text):
        builder.add(paragraph)
    return builder.document(DocumentKind.TEXT)


def _parse_json(text: str) -> ParsedDocument:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(
            f"The JSON is invalid at line {exc.lineno}, column {exc.colno} ({exc.msg}); fix it "
            "and upload it again."
        ) from exc
    except RecursionError as exc:
        raise ParseError(
            "The JSON is nested too deeply to be read; flatten its structure and upload it again."
        ) from exc
    builder = _Builder()
    builder.add_grouped(_json_lines(value))
    return builder.document(DocumentKind.JSON)


def _json_lines(value: object) -> Iterator[str]:
    """'path.to.key[0]: value' for every scalar, in document order.

    Iterative: json.loads accepts nesting as deep as the recursion limit, which a recursive
    walk here would then exceed.
    """
    stack: list[tuple[str, object]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict) and item:
            children = [(f"{path}.{key}" if path else key, child) for key, child in item.items()]
        elif isinstance(item, list) and item:
            children = [(f"{path}[{index}]", child) for index, child in enumerate(item)]
        else:
            rendered = item if isinstance(item, str) else json.dumps(item)
            if path:
                yield f"{path}: {rendered}"
            elif not isinstance(item, dict | list):  # a lone scalar; an empty root says nothing
                yield rendered
            continue
        stack.extend(reversed(children))


def _parse_csv(text: str) -> ParsedDocument:
    reader = csv.reader(io.StringIO(text, newline=""), _csv_dialect(text))
    builder = _Builder()
    try:
        header = next(reader, [])
        names = [name.strip() or f"column {index}" for index, name in enumerate(header, start=1)]
        builder.add_grouped(line for row in reader if (line := _csv_line(names, row)))
    except csv.Error as exc:
        raise ParseError(
            f"The CSV file cannot be read at line {reader.line_num} ({exc}); check its quotes "
            "and delimiters, and upload it again."
        ) from exc
    return builder.document(DocumentKind.CSV)


def _csv_dialect(text: str) -> type[csv.Dialect]:
    sample = text[:_CSV_SNIFF_CHARS]
    if len(text) > len(sample):
        sample = sample[: sample.rfind("\n") + 1] or sample  # whole rows only
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        return csv.excel  # the sniffer gives up on single-column files, among others


def _csv_line(names: list[str], row: list[str]) -> str:
    """'col: value; col: value', leaving out empty cells; cells beyond the header get a number."""
    pairs = (
        f"{names[index] if index < len(names) else f'column {index + 1}'}: {value.strip()}"
        for index, value in enumerate(row)
        if value.strip()
    )
    return "; ".join(pairs)


# --- Markdown ---------------------------------------------------------------------------------

_ATX = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*")
_FENCE_OPEN = re.compile(r" {0,3}(`{3,}|~{3,})")
_FENCE_CLOSE = re.compile(r" {0,3}(`{3,}|~{3,})[ \t]*")
_SETEXT = re.compile(r" {0,3}(=+|-+)[ \t]*")
_THEMATIC_BREAK = re.compile(r" {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*")
_FRONT_MATTER = re.compile(r"---[ \t]*\n.*?\n(?:---|\.\.\.)[ \t]*(?:\n|$)", re.DOTALL)


class _Markdown:
    """A line-by-line reader of the block structure: headings, paragraphs, fenced code."""

    def __init__(self) -> None:
        self.builder = _Builder()
        self._paragraph: list[str] = []
        self._fence = ""  # the opening fence while inside a fenced code block
        self._code: list[str] = []

    def feed(self, line: str) -> None:
        if self._fence:
            self._code_line(line)
        elif not line.strip():
            self._flush()
        elif fence := _FENCE_OPEN.match(line):
            self._flush()
            self._fence = fence.group(1)
            self._code = [line]
        elif atx := _ATX.fullmatch(line):
            self._flush()
            self._heading(len(atx.group(1)), atx.group(2) or "")
        elif self._paragraph and (setext := _SETEXT.fullmatch(line)):
            # The underlined paragraph is the heading.
            text = " ".join(self._paragraph)
            self._paragraph = []
            self._heading(1 if setext.group(1)[0] == "=" else 2, text)
        elif _THEMATIC_BREAK.fullmatch(line):
            self._flush()
        else:
            self._paragraph.append(line)

    def finish(self) -> ParsedDocument:
        self._flush()
        self.builder.add("\n".join(self._code))  # a fence left open runs to the end
        return self.builder.document(DocumentKind.MARKDOWN)

    def _code_line(self, line: str) -> None:
        self._code.append(line)
        closing = _FENCE_CLOSE.fullmatch(line)
        if (
            closing
            and closing.group(1)[0] == self._fence[0]
            and len(closing.group(1)) >= len(self._fence)
        ):
            self.builder.add("\n".join(self._code))
            self._fence = ""
            self._code = []

    def _heading(self, level: int, text: str) -> None:
        self.builder.heading(level, text)
        if level == 1 and self.builder.title is None and text.strip():
            self.builder.title = _squash(text)

    def _flush(self) -> None:
        self.builder.add("\n".join(self._paragraph))
        self._paragraph = []


def _parse_markdown(text: str) -> ParsedDocument:
    # YAML front matter would otherwise read as a paragraph underlined into a heading.
    front_matter = _FRONT_MATTER.match(text)
    if front_matter:
        text = text[front_matter.end() :]
    reader = _Markdown()
    for line in text.split("\n"):
        reader.feed(line)
    return reader.finish()


# --- HTML -------------------------------------------------------------------------------------

_HTML_DROPPED = ("head", "title", "script", "style", "nav", "footer", "noscript", "template")
_HTML_HEADINGS = {f"h{level}": level for level in range(1, 7)}
# Elements that end the text before them and start a new block.
_HTML_BLOCKS = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "body",
        "caption",
        "center",
        "dd",
        "details",
        "dialog",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "form",
        "header",
        "hgroup",
        "hr",
        "html",
        "li",
        "main",
        "menu",
        "ol",
        "p",
        "section",
        "summary",
        "ul",
    ]
)
_SPACES = re.compile(r"\s+")


class _Html:
    """A walk of the body in document order, building blocks between block-level boundaries."""

    def __init__(self) -> None:
        self.builder = _Builder()
        self._inline: list[str] = []  # text since the last block boundary; "\n" for <br>

    def walk(self, root: Tag) -> None:
        # Iterative: a document nested thousands of elements deep must not exhaust the stack.
        stack: list[tuple[PageElement, bool]] = [(root, False)]
        while stack:
            node, leaving = stack.pop()
            if leaving:
                self._flush()
            elif isinstance(node, Tag):
                stack.extend(self._enter(node))
            elif isinstance(node, NavigableString) and not isinstance(node, PreformattedString):
                self._inline.append(_SPACES.sub(" ", node))  # comments etc. are Preformatted

    def _enter(self, tag: Tag) -> list[tuple[PageElement, bool]]:
        """Handle a tag; what to walk next, in reverse order (the walk pops from the end)."""
        name = tag.name
        if name in _HTML_HEADINGS:
            self._flush()
            self.builder.heading(_HTML_HEADINGS[name], tag.get_text(" "))
        elif name == "br":
            self._inline.append("\n")
        elif name == "pre":
            self._flush()
            self.builder.add(tag.get_text().strip("\n"))
        elif name == "table":
            self._flush()
            self.builder.add(_html_table(tag))
        else:
            children = [(child, False) for child in reversed(tag.contents)]
            if name in _HTML_BLOCKS:
                self._flush()
                return [(tag, True), *children]
            return children
        return []

    def _flush(self) -> None:
        lines = (_squash(line) for line in "".join(self._inline).split("\n"))
        self.builder.add("\n".join(line for line in lines if line))
        self._inline = []


def _html_table(table: Tag) -> str:
    """One 'cell | cell' line per row; a nested table is read as part of its cell."""
    lines = []
    for row in table.find_all("tr"):
        if row.find_parent("table") is not table:
            continue
        cells = (
            _squash(cell.get_text(" ")) for cell in row.find_all(["td", "th"], recursive=False)
        )
        line = " | ".join(cell for cell in cells if cell)
        if line:
            lines.append(line)
    return "\n".join(lines)


def _parse_html(text: str) -> ParsedDocument:
    soup = BeautifulSoup(text, "lxml")
    title = _squash(soup.title.get_text()) if soup.title else ""
    for tag in soup.find_all(list(_HTML_DROPPED)):
        tag.decompose()
    reader = _Html()
    reader.walk(soup.body or soup)
    reader.builder.title = title or None
    return reader.builder.document(DocumentKind.HTML)


_TEXT_PARSERS: dict[DocumentKind, Callable[[str], ParsedDocument]] = {
    DocumentKind.TEXT: _parse_plain,
    DocumentKind.MARKDOWN: _parse_markdown,
    DocumentKind.HTML: _parse_html,
    DocumentKind.CSV: _parse_csv,
    DocumentKind.JSON: _parse_json,
}


# --- PDF and DOCX -----------------------------------------------------------------------------


def _parse_pdf(data: bytes) -> ParsedDocument:
    # pypdf raises many exception types on damaged files (PdfReadError, KeyError, ValueError,
    # AttributeError, ...), none of them a bug of ours: all mean "this PDF cannot be read".
    try:
        reader = PdfReader(io.BytesIO(data))
        unlocked = not reader.is_encrypted or bool(reader.decrypt(""))
        pages = [page.extract_text() for page in reader.pages] if unlocked else []
        title = reader.metadata.title if unlocked and reader.metadata else None
    except Exception as exc:
        raise ParseError(_DAMAGED_PDF) from exc
    if not unlocked:
        raise ParseError(_ENCRYPTED_PDF)
    builder = _Builder()
    builder.title = _squash(str(title or "")) or None
    for number, text in enumerate(pages, start=1):
        for paragraph in _PARAGRAPH_BREAK.split(text):
            builder.add(paragraph, page=number)
    return builder.document(DocumentKind.PDF)


_DOCX_HEADING = re.compile(r"Heading ([1-9])")


def _parse_docx(data: bytes) -> ParsedDocument:
    # Like pypdf, python-docx and lxml fail on damaged files with assorted exception types.
    try:
        document = docx.Document(io.BytesIO(data))
        builder = _Builder()
        builder.title = _squash(document.core_properties.title or "") or None
        for item in document.iter_inner_content():
            if isinstance(item, Paragraph):
                _docx_paragraph(builder, item)
            else:
                builder.add(_docx_table(item))
    except Exception as exc:
        raise ParseError(_DAMAGED_DOCX) from exc
    return builder.document(DocumentKind.DOCX)


def _docx_paragraph(builder: _Builder, paragraph: Paragraph) -> None:
    style = paragraph.style.name if paragraph.style is not None else None
    heading = _DOCX_HEADING.fullmatch(style or "")
    if style == "Title":
        builder.heading(0, paragraph.text)  # above Heading 1
        if builder.title is None:
            builder.title = _squash(paragraph.text) or None
    elif heading:
        builder.heading(int(heading.group(1)), paragraph.text)
    else:
        builder.add(paragraph.text)


def _docx_table(table: Table) -> str:
    lines = []
    for row in table.rows:
        texts: list[str] = []
        previous = None
        for cell in row.cells:
            # A horizontally merged cell comes once per grid column it spans, as the same object.
            if cell is not previous and cell.text.strip():
                texts.append(_squash(cell.text))
            previous = cell
        if texts:
            lines.append(" | ".join(texts))
    return "\n".join(lines)
