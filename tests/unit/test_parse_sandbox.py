"""The parse sandbox: a child process gives back exactly what `parse` gives in-process, and each
operating-system limit ends it with a LimitExceeded that names its setting."""

from __future__ import annotations

import asyncio

import pytest

from mtai.rag.parsing import UNLIMITED, ContentLimits, LimitExceeded, ParseError, parse
from mtai.rag.parsing.sandbox import SandboxLimits, parse_in_child
from tests.security.test_parsing_limits import shared_stream_pdf
from tests.unit.test_parsing import PAGES, make_docx, make_pdf

GENEROUS = SandboxLimits(
    timeout_seconds=60, cpu_seconds=60, memory_bytes=1024**3, content=UNLIMITED
)
MARKDOWN = b"# Guide\n\nIntro.\n\n## Install\n\nRun it.\n\n## Use\n\n\xc3\xa9t\xc3\xa9 \x1b\n"


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("guide.md", MARKDOWN),
        ("manual.docx", make_docx()),
        ("report.pdf", make_pdf(PAGES)),
        ("rows.csv", b"name,age\nada,36\nalan,41\n"),
    ],
)
async def test_the_child_returns_what_parse_returns(name: str, data: bytes) -> None:
    expected = parse(data, filename=name, content_type=None)
    got = await parse_in_child(data, filename=name, content_type=None, limits=GENEROUS)
    assert got == expected


async def test_a_parse_error_comes_back_with_its_message() -> None:
    with pytest.raises(ParseError, match="encoding other than UTF-8") as caught:
        await parse_in_child(
            b"caf\xe9 au lait", filename="a.txt", content_type=None, limits=GENEROUS
        )
    assert not isinstance(caught.value, LimitExceeded)


async def test_content_limits_apply_in_the_child() -> None:
    limits = SandboxLimits(
        timeout_seconds=60, cpu_seconds=60, memory_bytes=1024**3, content=ContentLimits(max_pages=2)
    )
    with pytest.raises(LimitExceeded, match=r"3 pages.*MTAI_PARSE_MAX_PAGES"):
        await parse_in_child(make_pdf(PAGES), filename="r.pdf", content_type=None, limits=limits)


async def test_cpu_time_limit_ends_the_child() -> None:
    limits = SandboxLimits(
        timeout_seconds=60, cpu_seconds=1, memory_bytes=1024**3, content=UNLIMITED
    )
    with pytest.raises(LimitExceeded, match=r"CPU time.*MTAI_PARSE_CPU_SECONDS"):
        await asyncio.wait_for(
            parse_in_child(shared_stream_pdf(), filename="s.pdf", content_type=None, limits=limits),
            30,
        )


async def test_memory_limit_ends_the_child() -> None:
    # Ten million empty lists: about 30 MB of JSON that takes well over 600 MB as objects.
    data = b"[" + b",".join([b"[]"] * 10_000_000) + b"]"
    limits = SandboxLimits(
        timeout_seconds=60, cpu_seconds=60, memory_bytes=400 * 1024**2, content=UNLIMITED
    )
    with pytest.raises(LimitExceeded, match=r"memory.*MTAI_PARSE_MEMORY_BYTES"):
        await asyncio.wait_for(
            parse_in_child(data, filename="n.json", content_type=None, limits=limits), 30
        )


async def test_wall_clock_deadline_kills_the_child() -> None:
    limits = SandboxLimits(
        timeout_seconds=1, cpu_seconds=60, memory_bytes=1024**3, content=UNLIMITED
    )
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(LimitExceeded, match=r"longer than 1 seconds.*MTAI_PARSE_TIMEOUT_SECONDS"):
        await parse_in_child(
            shared_stream_pdf(), filename="s.pdf", content_type=None, limits=limits
        )
    assert loop.time() - start < 3


async def test_cancelling_the_parse_kills_the_child_at_once() -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(
        parse_in_child(shared_stream_pdf(), filename="s.pdf", content_type=None, limits=GENEROUS)
    )
    await asyncio.sleep(1.0)
    start = loop.time()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert loop.time() - start < 1
