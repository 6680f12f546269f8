"""What an upload is: the type comes from the content first (magic bytes); the filename and
content type only choose among text formats, and a label that contradicts the content (a
"report.pdf" holding text) is refused rather than guessed around, because the user most likely
picked the wrong file.

Cheap and bounded: it reads the first bytes, a ZIP's directory (never a member), and decodes
text; no parser library runs here.
"""

from __future__ import annotations

import codecs
import io
import zipfile
from dataclasses import dataclass

from mtai.rag.parsing.model import DocumentKind, ParseError

SUPPORTED = "Supported types are PDF, Word (.docx), plain text, Markdown, HTML, CSV and JSON files."
EMPTY = "The file is empty (it contains no text); choose the right file and upload it again."
_MISLABELLED = (
    "Check that you chose the right file, or rename it to match its content, and upload it again."
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


@dataclass(frozen=True)
class Label:
    """The kind an upload claims to be."""

    kind: DocumentKind
    source: str  # for messages: "is named report.pdf", "was sent as application/pdf"


@dataclass(frozen=True)
class Content:
    """The kind an upload is."""

    # PDF, DOCX, TEXT for any decodable text (the label then picks the format), None if unusable.
    kind: DocumentKind | None
    looks_like: str  # for messages: "a PDF", "text", "a PNG image"
    advice: str = SUPPORTED  # what to do instead, when the content is unusable
    text: str = ""
    cause: Exception | None = None
    # The family of an unreadable file (a broken ZIP may be a .docx): when its label names that
    # family, the problem is the damage, not a wrong label.
    damaged: DocumentKind | None = None


def label(filename: str | None, content_type: str | None) -> Label | None:
    """The kind the upload claims: its extension if known, else its content type."""
    if filename:
        dot = filename.rfind(".")
        kind = _EXTENSIONS.get(filename[dot:].lower()) if dot >= 0 else None
        if kind is not None:
            return Label(kind, f"is named {filename}")
    if content_type:
        kind = _CONTENT_TYPES.get(content_type.split(";")[0].strip().lower())
        if kind is not None:
            return Label(kind, f"was sent as {content_type}")
    return None


def identify(data: bytes) -> Content:
    """What the bytes are, from their content alone."""
    if data.startswith(b"%PDF-"):
        return Content(DocumentKind.PDF, "a PDF")
    if data.startswith(_ZIP):
        return _identify_zip(data)
    if data.startswith(_OLE2):
        return Content(
            None,
            "a password-protected Office file or a legacy Word .doc file",
            advice="Save it as .docx without a password and upload it again.",
        )
    for signature, looks_like in _SIGNATURES:
        if data.startswith(signature):
            return Content(None, looks_like)
    return _decode(data)


def check_label(content: Content, claimed: Label | None) -> None:
    """ParseError if the content is unusable, or is not what its label says."""
    if claimed is not None and _family(claimed.kind) not in (content.kind, content.damaged):
        advice = content.advice if content.kind is None else _MISLABELLED
        raise ParseError(
            f"The file {claimed.source} but its content is not {_NAMES[_family(claimed.kind)]} "
            f"(it looks like {content.looks_like}). {advice}"
        ) from content.cause
    if content.kind is None:
        raise ParseError(
            f"The file looks like {content.looks_like}, which cannot be ingested. {content.advice}"
        ) from content.cause


def _family(kind: DocumentKind) -> DocumentKind:
    """PDF and DOCX are their own families; all text formats are TEXT."""
    return kind if kind in (DocumentKind.PDF, DocumentKind.DOCX) else DocumentKind.TEXT


def _identify_zip(data: bytes) -> Content:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        return Content(
            None,
            "a damaged Word document or ZIP archive",
            advice="Open it in Word, save it again as .docx, and upload the new file.",
            cause=exc,
            damaged=DocumentKind.DOCX,
        )
    if "word/document.xml" in names:
        return Content(DocumentKind.DOCX, _NAMES[DocumentKind.DOCX])
    for member, looks_like in _ZIP_MEMBERS:
        if member in names:
            return Content(None, looks_like)
    return Content(None, "a ZIP archive")


def _decode(data: bytes) -> Content:
    """Text in UTF-8 (with or without BOM) or UTF-16 with BOM; anything else is unusable."""
    for bom, codec, name in _BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(codec)
            except UnicodeDecodeError as exc:
                return Content(
                    None,
                    f"text that is not valid {name}",
                    advice="Save it again as UTF-8 and upload the new file.",
                    cause=exc,
                    damaged=DocumentKind.TEXT,
                )
            break
    else:
        if b"\x00" in data:
            return Content(None, "binary data of an unknown type")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            if any(byte in _CONTROL_BYTES for byte in data[:4096]):
                return Content(None, "binary data of an unknown type", cause=exc)
            return Content(
                None,
                "text in an encoding other than UTF-8",
                advice="Save it as UTF-8 and upload it again.",
                cause=exc,
                damaged=DocumentKind.TEXT,
            )
    if "\x00" in text:
        return Content(None, "binary data of an unknown type")
    if not text or text.isspace():
        raise ParseError(EMPTY)
    return Content(DocumentKind.TEXT, "text", text=text)
