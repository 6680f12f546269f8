"""CSV and JSON: records as 'name: value' lines, a few lines per block."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

from mtai.rag.parsing.model import Builder, ContentLimits, DocumentKind, ParsedDocument, ParseError

_CSV_SNIFF_CHARS = 32_768


def parse_json(text: str, limits: ContentLimits) -> ParsedDocument:
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
    builder = Builder(limits)
    builder.add_grouped(_json_lines(value))
    return builder.document(DocumentKind.JSON)


def _json_lines(value: object) -> Iterator[str]:
    """'path.to.key[0]: value' for every scalar, in document order.

    Iterative: json.loads accepts nesting as deep as the recursion limit, which a recursive
    walk here would then exceed. Lazy: an array of millions of items is walked item by item, so
    the character limit stops it after the first few.
    """
    stack: list[Iterator[tuple[str, object]]] = [iter([("", value)])]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        path, item = entry
        if isinstance(item, dict | list) and item:
            stack.append(_json_children(path, item))
            continue
        rendered = _scalar(item)
        if path:
            yield f"{path}: {rendered}"
        elif not isinstance(item, dict | list):  # a lone scalar; an empty root says nothing
            yield rendered


def _scalar(item: object) -> str:
    """As JSON writes it, without json.dumps's cost for the common cases."""
    if isinstance(item, str):
        return item
    if item is None:
        return "null"
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, int):
        return str(item)
    return json.dumps(item)  # floats (NaN, Infinity), empty objects and arrays


def _json_children(
    path: str, item: dict[str, object] | list[object]
) -> Iterator[tuple[str, object]]:
    if isinstance(item, dict):
        for key, child in item.items():
            yield (f"{path}.{key}" if path else key, child)
    else:
        for index, child in enumerate(item):
            yield (f"{path}[{index}]", child)


def parse_csv(text: str, limits: ContentLimits) -> ParsedDocument:
    reader = csv.reader(io.StringIO(text, newline=""), _csv_dialect(text))
    builder = Builder(limits)
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
