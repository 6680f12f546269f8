"""Finding 12 (/metrics): a non-ASCII bearer token was a 500, and production served /metrics
to anyone when no token was set."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from mtai.app import create_app
from mtai.config import Environment, Settings
from mtai.errors import ConfigurationError
from mtai.runtime import Runtime
from tests.conftest import run_mtai

TOKEN = "scrape-token-0123456789-abcdefghijklmnop"


@pytest.fixture
async def scraper(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sees a crash as the 500 it is, instead of the exception."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def test_a_non_ascii_bearer_token_is_a_401_not_a_500(
    scraper: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime.settings, "metrics_token", SecretStr(TOKEN))
    for raw in ("Bearer pässwörd-ünïcode".encode(), b"Bearer \xff\xfe", "Bearer ☃".encode()):
        response = await scraper.get("/metrics", headers={b"Authorization": raw})
        assert response.status_code == 401, response.text
        body = response.json()
        assert body["code"] == "unauthorized", body
        assert "MTAI_METRICS_TOKEN" in body["detail"]
    assert (await scraper.get("/metrics")).status_code == 401
    wrong = await scraper.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}x"})
    assert wrong.status_code == 401
    right = await scraper.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 200
    assert "mtai_gateway_requests" in right.text


def test_production_without_a_metrics_token_refuses_to_start(settings: Settings) -> None:
    open_metrics = settings.model_copy(update={"metrics_token": None, "metrics_public": False})
    with pytest.raises(ConfigurationError) as refused:
        create_app(open_metrics)
    message = str(refused.value)
    assert "Refusing to start in production" in message
    assert "MTAI_METRICS_TOKEN" in message
    assert "MTAI_METRICS_PUBLIC" in message
    # An empty token is no token.
    with pytest.raises(ConfigurationError):
        create_app(open_metrics.model_copy(update={"metrics_token": SecretStr("  ")}))
    # Each way out starts: a token, the explicit opt-in, or a laptop.
    create_app(open_metrics.model_copy(update={"metrics_token": SecretStr(TOKEN)}))
    create_app(open_metrics.model_copy(update={"metrics_public": True}))
    create_app(open_metrics.model_copy(update={"env": Environment.DEVELOPMENT}))


def test_mtai_serve_refuses_before_touching_the_database(settings: Settings) -> None:
    """The operator sees one line with the fix, before migrations or the bootstrap run."""
    refused = run_mtai(
        settings,
        "serve",
        "--port",
        "1",
        MTAI_METRICS_PUBLIC="false",
        DATABASE_URL="postgresql://nobody@127.0.0.1:1/none",  # never reached
    )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "Refusing to start in production" in refused.stderr, refused.stderr
    assert "MTAI_METRICS_TOKEN" in refused.stderr
    doctor = run_mtai(settings, "doctor", MTAI_METRICS_PUBLIC="false")
    assert doctor.returncode == 1
    assert "[FAIL] /metrics" in doctor.stdout, doctor.stdout
