"""Word (.docx): paragraphs, headings by style, and tables, in document order (python-docx).

A .docx is a ZIP archive. Before python-docx opens it (and inflates every part it relates to,
whole, in memory), the archive's directory is checked against the decompression limits, so a
few hundred kilobytes of zeros that inflate a thousandfold are refused unread. Then every member
is read through once in bounded steps, which stop at the size the directory states and check
the member's CRC: a directory that understates a member (which python-docx would inflate whole,
however large) is refused as damaged after at most one step past the stated size.
"""

from __future__ import annotations

import io
import re
import zipfile

import docx
from docx.table import Table
from docx.text.paragraph import Paragraph

from mtai.rag.parsing.model import (
    Builder,
    ContentLimits,
    DocumentKind,
    ParsedDocument,
    ParseError,
    limit_exceeded,
    squash,
)

DAMAGED = (
    "The Word document is damaged and cannot be read; open it in Word, save it again as .docx, "
    "and upload the new file."
)
# Inflated sizes below this are never refused for their ratio: small XML parts compress well.
RATIO_GRACE_BYTES = 1024 * 1024
_READ_STEP = 1024 * 1024
_HEADING = re.compile(r"Heading ([1-9])")


def check_archive(data: bytes, limits: ContentLimits) -> None:
    """LimitExceeded if the ZIP's directory says its members inflate beyond the limits;
    ParseError if a member is damaged or inflates to more than the directory says."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            _check_sizes(sum(info.file_size for info in members), len(data), limits)
            for info in members:
                with archive.open(info) as member:
                    while member.read(_READ_STEP):
                        pass
    except (ParseError, MemoryError):
        raise
    # Damage shows as assorted types: BadZipFile, zlib.error, EOFError, NotImplementedError (an
    # unknown compression method), RuntimeError (an encrypted member)...
    except Exception as exc:
        raise ParseError(DAMAGED) from exc


def _check_sizes(inflated: int, size: int, limits: ContentLimits) -> None:
    if limits.max_decompressed_bytes is not None and inflated > limits.max_decompressed_bytes:
        raise limit_exceeded(
            f"The Word document unpacks to {inflated} bytes",
            "MTAI_PARSE_MAX_DECOMPRESSED_BYTES",
            f"{limits.max_decompressed_bytes} bytes",
        )
    ratio = inflated / size
    limit = limits.max_compression_ratio
    if limit is not None and inflated > RATIO_GRACE_BYTES and ratio > limit:
        raise limit_exceeded(
            f"The Word document unpacks to {ratio:.0f} times its size, as files built to "
            "exhaust servers do",
            "MTAI_PARSE_MAX_COMPRESSION_RATIO",
            f"{limit:g} times",
        )


def parse_docx(data: bytes, limits: ContentLimits) -> ParsedDocument:
    check_archive(data, limits)
    builder = Builder(limits)
    # Like pypdf, python-docx and lxml fail on damaged files with assorted exception types.
    try:
        document = docx.Document(io.BytesIO(data))
        builder.title = squash(document.core_properties.title or "") or None
        for item in document.iter_inner_content():
            if isinstance(item, Paragraph):
                _paragraph(builder, item)
            else:
                builder.add(_table(item))
    except (ParseError, MemoryError):
        raise  # a MemoryError is the sandbox's memory limit, not damage
    except Exception as exc:
        raise ParseError(DAMAGED) from exc
    return builder.document(DocumentKind.DOCX)


def _paragraph(builder: Builder, paragraph: Paragraph) -> None:
    style = paragraph.style.name if paragraph.style is not None else None
    heading = _HEADING.fullmatch(style or "")
    if style == "Title":
        builder.heading(0, paragraph.text)  # above Heading 1
        if builder.title is None:
            builder.title = squash(paragraph.text) or None
    elif heading:
        builder.heading(int(heading.group(1)), paragraph.text)
    else:
        builder.add(paragraph.text)


def _table(table: Table) -> str:
    lines = []
    for row in table.rows:
        texts: list[str] = []
        previous = None
        for cell in row.cells:
            # A horizontally merged cell comes once per grid column it spans, as the same object.
            if cell is not previous and cell.text.strip():
                texts.append(squash(cell.text))
            previous = cell
        if texts:
            lines.append(" | ".join(texts))
    return "\n".join(lines)
