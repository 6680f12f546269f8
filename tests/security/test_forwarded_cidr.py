"""Finding 12 (forwarded addresses): the docs recommended `forwarded_allow_ips='*'`, under which
uvicorn takes the left-most X-Forwarded-For entry, one the client writes itself, as the client
address (so the per-address login throttle and the logs believe whatever a client claims), and
the uvicorn floor predated CIDR support, so the load balancer's subnets could not be named."""

from __future__ import annotations

import asyncio
import re
import secrets
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement

from mtai.db.embedded import free_port
from mtai.db.migrate import upgrade
from tests.conftest import deployment_env, make_settings
from tests.support.postgres import fresh_database

ROOT = Path(__file__).resolve().parents[2]
PROXY = "127.0.0.2"  # inside the trusted network, as the load balancer is
OUTSIDER = "127.0.0.66"  # outside it, as a client reaching the task directly would be
TRUSTED = "127.0.0.0/30"
PER_ADDRESS = 3


def test_the_uvicorn_floor_supports_cidr_networks() -> None:
    """uvicorn 0.31.0 added networks to --forwarded-allow-ips (release notes, #2468)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    [uvicorn] = [Requirement(r) for r in project["dependencies"] if r.startswith("uvicorn")]
    assert not uvicorn.specifier.contains("0.30.6"), uvicorn
    assert uvicorn.specifier.contains("0.31.0"), uvicorn


# A setting of the forwarded addresses, followed closely by a quoted or bare wildcard.
WILDCARD = re.compile(r"forwarded[_-]allow[_-]ips\W{0,8}(?:\S+\W{0,4})?[`'\"]?\*", re.IGNORECASE)


def test_no_doc_or_deployment_file_recommends_a_wildcard() -> None:
    files = [
        ROOT / "README.md",
        ROOT / "Dockerfile",
        ROOT / "docker-compose.yml",
        ROOT / "src" / "mtai" / "config.py",
        *(ROOT / "docs").glob("*.md"),
        *(ROOT / "terraform").glob("*.tf"),
        *(ROOT / "terraform").glob("*.md"),
        *(ROOT / "terraform").glob("*.example"),
        *(ROOT / "scripts").glob("*"),
        *(p for p in (ROOT / "deploy").rglob("*") if p.is_file()),
    ]
    found = []
    for path in files:
        # The threat model may name the wildcard as the attack; it recommends nothing.
        if path.name == "security.md":
            continue
        text = path.read_text()
        # Descriptions wrap: look at each mention with what follows it.
        for match in re.finditer(r"forwarded[_-]allow[_-]ips", text, re.IGNORECASE):
            window = text[match.start() : match.start() + 200]
            if WILDCARD.match(window) or re.search(r"[`'\"]\*[`'\"]", window):
                found.append(f"{path.relative_to(ROOT)}: {window[:120]!r}")
    assert not found, found


@pytest.fixture(scope="module")
def behind_a_proxy(pg_admin_url: str) -> Iterator[str]:
    """`mtai serve` as deployed: production, trusting only TRUSTED for X-Forwarded-For."""
    with fresh_database(pg_admin_url) as url:
        asyncio.run(upgrade(url, "mtai_app"))
        settings = make_settings(url)
        port = free_port()
        env = deployment_env(
            settings,
            MTAI_HOST="127.0.0.1",
            MTAI_PORT=str(port),
            MTAI_FORWARDED_ALLOW_IPS=TRUSTED,
            MTAI_LOGIN_ATTEMPTS_PER_IP=str(PER_ADDRESS),
            MTAI_BOOTSTRAP_DEMO_TENANT="",
            MTAI_BOOTSTRAP_ADMIN_PASSWORD=secrets.token_urlsafe(24),
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "mtai", "serve", "--no-migrate"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                assert process.poll() is None, process.communicate()[1]
                try:
                    if httpx.get(f"{base}/ping", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "mtai serve did not start"
                time.sleep(0.2)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _logins(base: str, peer: str, forwarded: list[str]) -> list[int]:
    """Failed logins (a new unknown email each time) sent from `peer` with each X-Forwarded-For."""
    transport = httpx.HTTPTransport(local_address=peer)
    with httpx.Client(transport=transport, base_url=base, timeout=30) as http:
        return [
            http.post(
                "/api/v1/auth/login",
                json={"email": f"nobody-{secrets.token_hex(6)}@example.test", "password": "x" * 12},
                headers={"X-Forwarded-For": chain},
            ).status_code
            for chain in forwarded
        ]


def test_the_proxys_x_forwarded_for_names_the_client(behind_a_proxy: str) -> None:
    # Five clients behind the load balancer: each is counted on its own address.
    clients = [f"192.0.2.{i}" for i in range(1, 6)]
    assert _logins(behind_a_proxy, PROXY, clients) == [401] * 5


def test_a_client_cannot_choose_its_address_through_the_proxy(behind_a_proxy: str) -> None:
    # The client writes the left entries; the load balancer appends the address it saw.
    chains = [f"198.51.100.{i}, 192.0.2.200" for i in range(1, 6)]
    codes = _logins(behind_a_proxy, PROXY, chains)
    assert codes == [401] * PER_ADDRESS + [429] * (5 - PER_ADDRESS), codes


def test_x_forwarded_for_from_outside_the_trusted_network_is_ignored(behind_a_proxy: str) -> None:
    spoofed = [f"192.0.2.{100 + i}" for i in range(5)]
    codes = _logins(behind_a_proxy, OUTSIDER, spoofed)
    assert codes == [401] * PER_ADDRESS + [429] * (5 - PER_ADDRESS), codes
