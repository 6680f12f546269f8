"""Invitations by mail: with SMTP set and tokens not shown, only the mailbox gets the link."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email import message_from_string, policy
from email.message import EmailMessage

import httpx
import pytest

from mtai.app import create_app
from mtai.config import Settings
from tests.conftest import TenantFixture, invite, run_mtai


@dataclass
class Mailbox:
    """A minimal SMTP server on loopback that keeps every message's data."""

    port: int = 0
    messages: list[str] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mailbox ready\r\n")
        while line := await reader.readline():
            command = line.decode().strip().upper()
            if command.startswith(("EHLO", "HELO")):
                writer.write(b"250 mailbox\r\n")
            elif command == "DATA":
                writer.write(b"354 go on\r\n")
                await writer.drain()
                data = b""
                while (chunk := await reader.readline()) != b".\r\n":
                    data += chunk
                self.messages.append(data.decode())
                self.arrived.set()
                writer.write(b"250 kept\r\n")
            elif command == "QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()


@pytest.fixture
async def mailbox() -> AsyncIterator[Mailbox]:
    box = Mailbox()
    server = await asyncio.start_server(box.session, "127.0.0.1", 0)
    box.port = server.sockets[0].getsockname()[1]
    async with server:
        yield box


async def test_a_mailed_invitation_reaches_only_the_mailbox(
    settings: Settings, mailbox: Mailbox, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    mailing = settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": mailbox.port,
            "smtp_starttls": False,
            "smtp_from": "mtai@platform.example",
            "invitation_show_token": False,
            "public_url": "https://ai.example.com",
        }
    )
    app = create_app(mailing)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mail") as client:
            invited = await client.post(
                "/api/v1/invitations",
                json={"email": "mailed@elsewhere.example", "role": "admin"},
                headers=tenant_a.api_key,
            )
            assert invited.status_code == 201, invited.text
            assert invited.json()["token"] is None
            assert invited.json()["accept_url"] is None
            await asyncio.wait_for(mailbox.arrived.wait(), timeout=10)
            mail = message_from_string(mailbox.messages[0], policy=policy.default)
            assert mail["To"] == "mailed@elsewhere.example"
            assert mail["From"] == "mtai@platform.example"
            assert isinstance(mail, EmailMessage)
            part = mail.get_body()
            assert part is not None
            body = part.get_content()
            assert f"{tenant_a.slug.upper()} as admin" in body
            link = re.search(r"https://ai\.example\.com/ui/accept#token=(inv_\S+)", body)
            assert link is not None
            accepted = await client.post(
                "/api/v1/invitations/accept",
                json={"token": link.group(1), "password": "from-the-mailbox"},
            )
            assert accepted.status_code == 200, accepted.text
            assert accepted.json()["user"]["tenant"]["role"] == "admin"
            # A mailed-only token proved the mailbox: later invitations to it are listed.
            later = await invite(client, tenant_b.api_key, "mailed@elsewhere.example", "member")
            mine = await client.get(
                "/api/v1/auth/invitations",
                headers={"Authorization": f"Bearer {accepted.json()['access_token']}"},
            )
            assert [i["id"] for i in mine.json()] == [later["id"]]


async def test_the_cli_waits_for_the_mail_before_it_exits(
    settings: Settings, mailbox: Mailbox, tenant_a: TenantFixture
) -> None:
    done = await asyncio.to_thread(
        run_mtai,
        settings,
        "user",
        "create",
        "cli-mailed@elsewhere.example",
        "--tenant",
        tenant_a.slug,
        MTAI_SMTP_HOST="127.0.0.1",
        MTAI_SMTP_PORT=str(mailbox.port),
        MTAI_SMTP_STARTTLS="false",
        MTAI_INVITATION_SHOW_TOKEN="false",
    )
    assert done.returncode == 0, done.stderr
    assert "delivered by mail only" in done.stdout
    assert "inv_" not in done.stdout
    assert len(mailbox.messages) == 1
    assert "cli-mailed@elsewhere.example" in mailbox.messages[0]
