"""`python -m mtai.rag.parsing.child`: parse one document under operating-system limits.

Started by `sandbox.parse_in_child`, never by hand. Reads one JSON line (the limits, filename
and content type) and then the document's bytes from stdin; confines itself (address space,
CPU time, and an alarm that ends it even if its parent dies); parses; writes the result to
stdout as JSON lines (see `sandbox` for the format) and exits 0. Running out of memory exits
with MEMORY_EXIT; the kernel ends it with SIGXCPU when its CPU time is spent.
"""

from __future__ import annotations

import io
import json
import math
import os
import resource
import signal
import sys
from typing import IO

from mtai.rag.parsing import ContentLimits, LimitExceeded, ParsedDocument, ParseError, parse

MEMORY_EXIT = 3


def main() -> None:
    request = json.loads(sys.stdin.buffer.readline())
    confine(request["memory_bytes"], request["cpu_seconds"], request["timeout_seconds"])
    out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="\n")
    try:
        data = sys.stdin.buffer.read()
        document = parse(
            data,
            filename=request["filename"],
            content_type=request["content_type"],
            limits=ContentLimits(**request["limits"]),
        )
        write(out, document)
    except MemoryError:
        os._exit(MEMORY_EXIT)  # nothing more can be allocated, not even a message
    except LimitExceeded as exc:
        _line(out, ["limit", str(exc)])
    except ParseError as exc:
        _line(out, ["error", str(exc)])
    out.flush()


def confine(memory_bytes: int, cpu_seconds: int, timeout_seconds: float) -> None:
    _lower(resource.RLIMIT_AS, memory_bytes, memory_bytes)
    # SIGXCPU at the soft limit ends the process; SIGKILL one second later if it did not.
    _lower(resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 1)
    # The parent kills this process at its deadline; the alarm covers a parent that died.
    signal.alarm(math.ceil(timeout_seconds) + 5)


def _lower(limit: int, soft: int, hard: int) -> None:
    """Set a limit, never above the hard limit already in force (a container's, say)."""
    _, current = resource.getrlimit(limit)
    if current != resource.RLIM_INFINITY:
        soft, hard = min(soft, current), min(hard, current)
    resource.setrlimit(limit, (soft, hard))


def write(out: IO[str], document: ParsedDocument) -> None:
    """The header, each distinct heading path once (numbered in order), then the blocks."""
    _line(out, ["document", document.kind.value, document.title])
    headings: dict[tuple[str, ...], int] = {}
    for block in document.blocks:
        index = headings.get(block.heading_path)
        if index is None:
            index = headings[block.heading_path] = len(headings)
            _line(out, ["heading", list(block.heading_path)])
        _line(out, ["block", block.text, index, block.page])
    _line(out, ["end"])


def _line(out: IO[str], item: list[object]) -> None:
    out.write(json.dumps(item, ensure_ascii=False))
    out.write("\n")


if __name__ == "__main__":
    main()
