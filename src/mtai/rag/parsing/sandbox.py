"""Parsing in a child process that the operating system bounds, and that is killed on expiry.

Parser libraries (pypdf, python-docx, lxml) are not hardened against files built to exhaust
them, and a thread running one can be neither interrupted nor limited. So each document is
parsed by `python -m mtai.rag.parsing.child`, with its own address-space limit (RLIMIT_AS), CPU
time limit (RLIMIT_CPU), a wall-clock deadline after which this side kills its process group,
and a cap on the output it may send back. Cancelling `parse_in_child` (a shutdown) kills the
child at once: nothing ever waits for a parse to end on its own.

The child gets a minimal environment: none of the server's secrets.

Wire format, stdin: one JSON line {memory_bytes, cpu_seconds, timeout_seconds, filename,
content_type, limits}, then the document's bytes. Stdout: JSON lines, either
["document", kind, title], then ["heading", [path...]] (numbered from 0 in order of appearance)
and ["block", text, heading_number, page] lines, then ["end"]; or one ["limit", message] or
["error", message] line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from dataclasses import asdict, dataclass

from mtai.rag.parsing.child import MEMORY_EXIT
from mtai.rag.parsing.model import (
    Block,
    ContentLimits,
    DocumentKind,
    LimitExceeded,
    ParsedDocument,
    ParseError,
    limit_exceeded,
)

CHILD = "mtai.rag.parsing.child"
_READ_BYTES = 1 << 16
_STDERR_BYTES = 16_384  # kept for the log when the child crashes
# The output's bytes per extracted character, at most: JSON's \u escapes take 6.
_OUTPUT_BYTES_PER_CHAR = 8
_OUTPUT_OVERHEAD_BYTES = 1 << 20
_ENVIRONMENT = ("PATH", "PYTHONPATH", "LANG", "LC_ALL", "TMPDIR")


@dataclass(frozen=True)
class SandboxLimits:
    timeout_seconds: float
    cpu_seconds: int
    memory_bytes: int
    content: ContentLimits


class _OutputTooLarge(Exception):
    pass


async def parse_in_child(
    data: bytes, *, filename: str | None, content_type: str | None, limits: SandboxLimits
) -> ParsedDocument:
    """The parsed document; ParseError (LimitExceeded for a limit) for the document's own
    problems; RuntimeError if the parser crashed some other way."""
    request = {
        "memory_bytes": limits.memory_bytes,
        "cpu_seconds": limits.cpu_seconds,
        "timeout_seconds": limits.timeout_seconds,
        "filename": filename,
        "content_type": content_type,
        "limits": asdict(limits.content),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        CHILD,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={name: os.environ[name] for name in _ENVIRONMENT if name in os.environ},
        start_new_session=True,  # its own process group, killed whole; no terminal signals
    )
    try:
        output, errors = await asyncio.wait_for(
            _exchange(process, json.dumps(request).encode() + b"\n", data, _output_cap(limits)),
            limits.timeout_seconds,
        )
    except TimeoutError:
        raise limit_exceeded(
            f"Parsing the document took longer than {limits.timeout_seconds:g} seconds",
            "MTAI_PARSE_TIMEOUT_SECONDS",
            f"{limits.timeout_seconds:g} seconds",
        ) from None
    except _OutputTooLarge:
        raise _too_many_chars(limits) from None
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    return await asyncio.to_thread(_result, process.returncode, output, errors, limits)


async def _exchange(
    process: asyncio.subprocess.Process, header: bytes, data: bytes, cap: int | None
) -> tuple[bytes, bytes]:
    assert process.stdin is not None
    assert process.stdout is not None
    assert process.stderr is not None
    writer, stdout, stderr = process.stdin, process.stdout, process.stderr

    async def feed() -> None:
        try:
            writer.write(header)
            writer.write(data)
            await writer.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the child stopped reading: it failed, and its exit status says how
        finally:
            writer.close()

    feeding = asyncio.create_task(feed())
    draining = asyncio.create_task(_collect(stderr, _STDERR_BYTES, strict=False))
    try:
        output = await _collect(stdout, cap, strict=True)
        await feeding
        errors = await draining
    finally:
        for task in (feeding, draining):
            task.cancel()
        await asyncio.gather(feeding, draining, return_exceptions=True)
    await process.wait()
    return output, errors


async def _collect(stream: asyncio.StreamReader, cap: int | None, *, strict: bool) -> bytes:
    """Everything the stream sends, up to `cap` bytes; past it, _OutputTooLarge if `strict`,
    else the rest is read and dropped."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await stream.read(_READ_BYTES):
        if cap is not None and size + len(chunk) > cap:
            if strict:
                raise _OutputTooLarge
            chunk = chunk[: max(0, cap - size)]
        size += len(chunk)
        chunks.append(chunk)
    return b"".join(chunks)


def _output_cap(limits: SandboxLimits) -> int | None:
    chars = limits.content.max_chars
    return None if chars is None else chars * _OUTPUT_BYTES_PER_CHAR + _OUTPUT_OVERHEAD_BYTES


def _too_many_chars(limits: SandboxLimits) -> LimitExceeded:
    return limit_exceeded(
        "The document holds more text than allowed",
        "MTAI_PARSE_MAX_CHARS",
        limits.content.max_chars,
    )


def _result(
    returncode: int | None, output: bytes, errors: bytes, limits: SandboxLimits
) -> ParsedDocument:
    if returncode == MEMORY_EXIT:
        raise limit_exceeded(
            f"Parsing the document needed more than {limits.memory_bytes} bytes of memory",
            "MTAI_PARSE_MEMORY_BYTES",
            f"{limits.memory_bytes} bytes",
        )
    if returncode == -signal.SIGXCPU:
        raise limit_exceeded(
            f"Parsing the document used more than {limits.cpu_seconds} seconds of CPU time",
            "MTAI_PARSE_CPU_SECONDS",
            f"{limits.cpu_seconds} seconds",
        )
    if returncode != 0:
        tail = errors.decode("utf-8", "replace")[-2000:]
        raise RuntimeError(f"the parser process exited with status {returncode}: {tail}")
    # One JSON document per "\n" (JSON escapes it in strings); not str.splitlines(), which also
    # breaks at U+2028, U+2029 and NEL, characters JSON leaves unescaped in a document's text.
    return decode([line for line in output.decode("utf-8").split("\n") if line])


def decode(lines: list[str]) -> ParsedDocument:
    """The document a child wrote (see the module's docstring), or its error raised."""
    items = [json.loads(line) for line in lines]
    if not items:
        raise RuntimeError("the parser process wrote nothing")
    first = items[0]
    if first[0] == "limit":
        raise LimitExceeded(first[1])
    if first[0] == "error":
        raise ParseError(first[1])
    if first[0] != "document" or items[-1] != ["end"]:
        raise RuntimeError("the parser process wrote an incomplete document")
    headings: list[tuple[str, ...]] = []
    blocks: list[Block] = []
    for item in items[1:-1]:
        if item[0] == "heading":
            headings.append(tuple(item[1]))
        else:
            _, text, heading, page = item
            blocks.append(Block(text, headings[heading], page))
    return ParsedDocument(DocumentKind(first[1]), blocks, first[2])
