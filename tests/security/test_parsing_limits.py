"""Finding 3: documents built to exhaust the parser fail fast, with a reason, and harm no one.

Each crafted document is uploaded over HTTP to an app whose parse limits are short, and must
end `failed` within the configured deadline with a sentence naming the limit and its setting,
after one attempt (a deterministic limit is not retried), while `/ping` keeps answering in
under 100 ms. A real `mtai serve` process must stop within 5 s of SIGTERM in the middle of
parsing the crafted PDF, and leave no parser process behind. The inputs are built here, small
on the wire: a PDF whose pages share one huge compressed content stream, a DOCX whose
relationships point at a large zero-filled part, a ZIP whose directory understates what its
member inflates to, and a flat JSON array of millions of items.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import subprocess
import sys
import time
import zipfile
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import docx
import httpx
import pytest

from mtai.app import create_app
from mtai.config import Settings
from mtai.db import embedded
from mtai.db.migrate import upgrade
from mtai.runtime import Runtime
from tests.conftest import TenantFixture, deployment_env, make_settings, make_tenant
from tests.integration.test_rag import DOCS, pdf_bytes, upload_file
from tests.support.postgres import fresh_database

# Short limits, so that each attack ends in seconds (though not so short that a loaded machine
# runs into the deadline before the limit each test expects).
TIMEOUT_SECONDS = 8.0
LIMITS: dict[str, Any] = {
    "parse_timeout_seconds": TIMEOUT_SECONDS,
    "parse_cpu_seconds": 30,
    "parse_max_pages": 30,
    "parse_max_chars": 1_000_000,
    "ingest_max_chunks": 50,
}
# Upload to `failed`: queue pick-up, the child's start and the database writes on top of the
# parse deadline (generous: two cores are shared by the whole test run).
SLACK_SECONDS = 6.0
# How long the old code is given before a test calls it hung.
HUNG_SECONDS = 30.0
PING_BUDGET_SECONDS = 0.1
CHILD_MODULE = "mtai.rag.parsing.child"

Document = dict[str, Any]


# --------------------------------------------------------------------------- crafted inputs


def shared_stream_pdf(pages: int = 20, operators: int = 300_000) -> bytes:
    """A valid PDF of `pages` pages that all draw one content stream of `operators` text
    moves and empty strings: about 11 KB on the wire. pypdf parses the shared stream again for
    every page, just under its own per-stream work limit: 30-45 s per page here, 10-15 minutes
    of one core for the document."""
    body = b"BT /F1 12 Tf " + b"1 0 Td () Tj " * operators + b"ET"
    stream = zlib.compress(body, 9)
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids ["
        + b" ".join(f"{5 + i} 0 R".encode() for i in range(pages))
        + f"] /Count {pages} >>".encode(),
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    objects += [
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R "
        b"/Resources << /Font << /F1 4 0 R >> >> >>"
    ] * pages
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n")
    offsets = []
    for number, content in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + content + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    )
    return out.getvalue()


ZEROS_MEMBER = "word/media/zeros.bin"
ZEROS_BYTES = 200 * 1024 * 1024


def _docx_with_member(write_member: Any) -> bytes:
    """A real .docx (python-docx) whose document relationships also point at ZEROS_MEMBER,
    so python-docx loads that part whole when it opens the package."""
    document = docx.Document()
    document.add_paragraph("A perfectly ordinary paragraph.")
    plain = io.BytesIO()
    document.save(plain)
    out = io.BytesIO()
    with (
        zipfile.ZipFile(plain) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as target,
    ):
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "word/_rels/document.xml.rels":
                data = data.replace(
                    b"</Relationships>",
                    b'<Relationship Id="rIdBomb" Type="http://schemas.openxmlformats.org/'
                    b'officeDocument/2006/relationships/image" Target="media/zeros.bin"/>'
                    b"</Relationships>",
                )
            target.writestr(info.filename, data)
        write_member(target)
    return out.getvalue()


def _write_zeros(target: zipfile.ZipFile) -> None:
    chunk = bytes(1024 * 1024)
    with target.open(ZEROS_MEMBER, "w") as member:
        for _ in range(ZEROS_BYTES // len(chunk)):
            member.write(chunk)


def zero_filled_docx() -> bytes:
    """About 200 KB that python-docx inflates to 200 MB (ratio ~1000:1)."""
    return _docx_with_member(_write_zeros)


def lying_directory_docx() -> bytes:
    """The same bomb, but the ZIP's local header and central directory both claim that the
    member inflates to 1000 bytes: a check of the directory alone would let it through."""
    data = bytearray(zero_filled_docx())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        local = archive.getinfo(ZEROS_MEMBER).header_offset
    central = data.rfind(ZEROS_MEMBER.encode()) - 46  # the directory comes last
    assert data[local : local + 4] == b"PK\x03\x04"
    assert data[central : central + 4] == b"PK\x01\x02"
    small = (1000).to_bytes(4, "little")
    data[local + 22 : local + 26] = small  # uncompressed size in the local header
    data[central + 24 : central + 28] = small  # and in the central directory
    return bytes(data)


def flat_json(items: int = 3_000_000) -> bytes:
    """A flat array of millions of zeros: 6 MB that the old parser turned into 3 million lines."""
    return b"[" + b",".join([b"0"] * items) + b"]"


def many_chunks_text() -> bytes:
    """Well under the character limit, but far more chunks than the test's chunk limit."""
    paragraph = " ".join(f"word{i} of a long and winding paragraph" for i in range(25))
    return "\n\n".join(f"Section {n}. {paragraph}" for n in range(60)).encode()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
async def limits_db(pg_admin_url: str) -> AsyncIterator[str]:
    """A database of this module's own: a `mtai serve` process killed mid-parse leaves a
    document behind that the rest of the suite's reapers must not take over."""
    with fresh_database(pg_admin_url) as url:
        await upgrade(url, "mtai_app")
        yield url


@pytest.fixture(scope="module")
def limits_settings(limits_db: str) -> Settings:
    return make_settings(limits_db, **LIMITS)


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://limits") as c:
            yield app.state.runtime, c


@pytest.fixture(scope="module")
async def limited(limits_settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    async with serving(limits_settings) as (runtime, client):
        tenant = await make_tenant(client, runtime)
        yield client, tenant


async def upload(client: httpx.AsyncClient, tenant: TenantFixture, name: str, data: bytes) -> str:
    response = await upload_file(client, tenant.owner, name, data)
    assert response.status_code in (200, 202), response.text
    document_id: str = response.json()["id"]
    return document_id


async def finished_while_pinging(
    client: httpx.AsyncClient, tenant: TenantFixture, document_id: str, within: float
) -> tuple[Document, float, float]:
    """The document once ready or failed (AssertionError after `within` s), the seconds it
    took, and the slowest /ping answer seen meanwhile (asked every 50 ms)."""
    start = time.monotonic()
    slowest = 0.0
    while True:
        asked = time.monotonic()
        pong = await client.get("/ping")
        slowest = max(slowest, time.monotonic() - asked)
        assert pong.json() == "pong"
        response = await client.get(f"{DOCS}/{document_id}", headers=tenant.owner)
        assert response.status_code == 200, response.text
        body: Document = response.json()
        if body["status"] in ("ready", "failed"):
            return body, time.monotonic() - start, slowest
        assert time.monotonic() - start < within, f"still {body['status']} after {within} s"
        await asyncio.sleep(0.05)


def assert_failed_on_limit(body: Document, setting: str, *words: str) -> None:
    assert body["status"] == "failed", body
    error = body["error"]
    assert setting in error, error
    for word in words:
        assert word in error, error
    assert body["attempts"] == 1, body  # a deterministic limit is not retried


# --------------------------------------------------------------------------- over HTTP


async def test_pdf_with_one_huge_shared_content_stream_fails_at_the_deadline(
    limited: tuple[httpx.AsyncClient, TenantFixture],
) -> None:
    client, tenant = limited
    data = shared_stream_pdf()
    assert len(data) < 40_000
    document_id = await upload(client, tenant, "report.pdf", data)
    body, took, slowest = await finished_while_pinging(client, tenant, document_id, HUNG_SECONDS)
    assert_failed_on_limit(body, "MTAI_PARSE_TIMEOUT_SECONDS", "seconds")
    assert took < TIMEOUT_SECONDS + SLACK_SECONDS, took
    assert slowest < PING_BUDGET_SECONDS, slowest


async def test_docx_relating_a_zero_filled_part_fails_on_its_compression_ratio(
    limited: tuple[httpx.AsyncClient, TenantFixture],
) -> None:
    client, tenant = limited
    data = await asyncio.to_thread(zero_filled_docx)
    assert len(data) < 1_000_000
    document_id = await upload(client, tenant, "memo.docx", data)
    body, took, slowest = await finished_while_pinging(client, tenant, document_id, HUNG_SECONDS)
    assert_failed_on_limit(body, "MTAI_PARSE_MAX_COMPRESSION_RATIO", "times")
    assert took < TIMEOUT_SECONDS + SLACK_SECONDS, took
    assert slowest < PING_BUDGET_SECONDS, slowest


async def test_zip_directory_that_understates_a_member_is_refused_without_inflating_it(
    limited: tuple[httpx.AsyncClient, TenantFixture],
) -> None:
    client, tenant = limited
    data = await asyncio.to_thread(lying_directory_docx)
    document_id = await upload(client, tenant, "memo2.docx", data)
    body, took, slowest = await finished_while_pinging(client, tenant, document_id, HUNG_SECONDS)
    assert body["status"] == "failed", body
    assert "damaged" in body["error"], body["error"]
    assert body["attempts"] == 1, body
    assert took < TIMEOUT_SECONDS + SLACK_SECONDS, took
    assert slowest < PING_BUDGET_SECONDS, slowest


async def test_flat_json_array_of_millions_of_items_fails_on_the_character_limit(
    limited: tuple[httpx.AsyncClient, TenantFixture],
) -> None:
    client, tenant = limited
    document_id = await upload(client, tenant, "numbers.json", flat_json())
    body, took, slowest = await finished_while_pinging(client, tenant, document_id, HUNG_SECONDS)
    assert_failed_on_limit(body, "MTAI_PARSE_MAX_CHARS", "1000000")
    assert took < TIMEOUT_SECONDS + SLACK_SECONDS, took
    assert slowest < PING_BUDGET_SECONDS, slowest


async def test_pdf_with_more_pages_than_allowed_fails_on_the_page_limit(
    limited: tuple[httpx.AsyncClient, TenantFixture],
) -> None:
    client, tenant = limited
    data = pdf_bytes(*(f"Page {n} of the long manual." for n in range(31)))
    document_id = await upload(client, tenant, "manual.pdf", data)
    body, _, _ = await finished_while_pinging(client, tenant, document_id, HUNG_SECONDS)
    assert_failed_on_limit(body, "MTAI_PARSE_MAX_PAGES", "31 pages")


async def test_document_making_too_many_chunks_fails_on_the_chunk_limit(
    limited: tuple[httpx.AsyncClient, TenantFixture],
) -> None:
    client, tenant = limited
    document_id = await upload(client, tenant, "long.txt", many_chunks_text())
    body, _, _ = await finished_while_pinging(client, tenant, document_id, HUNG_SECONDS)
    assert_failed_on_limit(body, "MTAI_INGEST_MAX_CHUNKS", "50")


async def test_an_ordinary_document_still_becomes_ready(
    limited: tuple[httpx.AsyncClient, TenantFixture],
) -> None:
    client, tenant = limited
    data = pdf_bytes("Anchors hold ships in place.", "Chains connect anchors to ships.")
    document_id = await upload(client, tenant, "anchors.pdf", data)
    body, _, _ = await finished_while_pinging(client, tenant, document_id, HUNG_SECONDS)
    assert body["status"] == "ready", body
    assert body["kind"] == "pdf"


async def test_text_with_unicode_line_separators_comes_back_whole(
    limited: tuple[httpx.AsyncClient, TenantFixture],
) -> None:
    """U+2028, U+2029 and NEL (U+0085) pass through JSON unescaped: the child's output is one
    JSON document per '\\n', not per anything str.splitlines() calls a line break."""
    client, tenant = limited
    text = "Lamps are trimmed\u2028at dusk.\u2029Wicks\x85last four hours."
    document_id = await upload(client, tenant, "notes.txt", text.encode())
    body, _, _ = await finished_while_pinging(client, tenant, document_id, HUNG_SECONDS)
    assert body["status"] == "ready", body
    assert body["attempts"] == 1, body


# --------------------------------------------------------------------------- a real server


def parser_children(parent: int) -> list[int]:
    """Pids of the parser processes `parent` started (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == parent and CHILD_MODULE in (entry / "cmdline").read_text():
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@contextlib.contextmanager
def mtai_serve(settings: Settings, port: int) -> Iterator[subprocess.Popen[bytes]]:
    env = deployment_env(
        settings,
        MTAI_PORT=str(port),
        # Long limits: the parse must still be running when the server is told to stop.
        MTAI_PARSE_TIMEOUT_SECONDS="300",
        MTAI_PARSE_CPU_SECONDS="300",
        MTAI_BOOTSTRAP_DEMO_TENANT="",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "mtai", "serve", "--no-migrate"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


async def test_sigterm_stops_mtai_serve_within_5_s_during_a_parse(
    limits_settings: Settings, limited: tuple[httpx.AsyncClient, TenantFixture]
) -> None:
    _, tenant = limited
    port = embedded.free_port()
    base = f"http://127.0.0.1:{port}"
    with mtai_serve(limits_settings, port) as process:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            deadline = time.monotonic() + 90
            while True:
                assert process.poll() is None, "mtai serve exited before it was ready"
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/ping")).status_code == 200:
                        break
                assert time.monotonic() < deadline, "mtai serve did not start in 90 s"
                await asyncio.sleep(0.2)
            response = await http.post(
                DOCS,
                # Other bytes than the test above's, which would be a duplicate.
                files={"file": ("slow.pdf", shared_stream_pdf(pages=19), "application/pdf")},
                headers=tenant.api_key,
            )
            assert response.status_code in (200, 202), response.text
            document_id = response.json()["id"]
            deadline = time.monotonic() + 30
            while True:
                body = (await http.get(f"{DOCS}/{document_id}", headers=tenant.api_key)).json()
                if body["status"] == "processing":
                    break
                assert body["status"] == "queued", body
                assert time.monotonic() < deadline, "the parse did not start in 30 s"
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # well into the parse
        children = parser_children(process.pid)
        start = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 5.0)
        except subprocess.TimeoutExpired:
            raise AssertionError("mtai serve ignored SIGTERM for 5 s during a parse") from None
        assert time.monotonic() - start < 5.0
    assert children, "the parse did not run in a child process"
    await asyncio.sleep(0.5)
    assert not [pid for pid in children if alive(pid)], "a parser process outlived the server"
