"""PDF: the text layer of each page (pypdf), split into paragraphs, and the metadata title."""

from __future__ import annotations

import io

from pypdf import PdfReader

from mtai.rag.parsing.model import (
    PARAGRAPH_BREAK,
    Builder,
    ContentLimits,
    DocumentKind,
    ParsedDocument,
    ParseError,
    limit_exceeded,
    squash,
)

_DAMAGED = (
    "The PDF is damaged or incomplete and cannot be read; open it in a PDF viewer, save or "
    "export it again, and upload the new file."
)
_ENCRYPTED = (
    "The PDF is encrypted with a password; remove the password (for example by printing it to "
    "a new PDF) and upload it again."
)


def parse_pdf(data: bytes, limits: ContentLimits) -> ParsedDocument:
    builder = Builder(limits)
    # pypdf raises many exception types on damaged files (PdfReadError, KeyError, ValueError,
    # AttributeError, ...), none of them a bug of ours: all mean "this PDF cannot be read".
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ParseError(_ENCRYPTED)
        pages = reader.pages
        count = len(pages)
        if limits.max_pages is not None and count > limits.max_pages:
            raise limit_exceeded(
                f"The PDF has {count} pages", "MTAI_PARSE_MAX_PAGES", limits.max_pages
            )
        title = reader.metadata.title if reader.metadata else None
        builder.title = squash(str(title or "")) or None
        for number, page in enumerate(pages, start=1):
            for paragraph in PARAGRAPH_BREAK.split(page.extract_text()):
                builder.add(paragraph, page=number)
    except (ParseError, MemoryError):
        raise  # a MemoryError is the sandbox's memory limit, not damage
    except Exception as exc:
        raise ParseError(_DAMAGED) from exc
    return builder.document(DocumentKind.PDF)
