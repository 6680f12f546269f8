"""The web UI's files as the API serves them at /ui: caching, app routes, security headers."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from mtai.api.routers import ui


def built_asset() -> str:
    index = (ui.DIST / "index.html").read_text()
    found = re.search(r'src="/ui/(assets/[^"]+\.js)"', index)
    assert found, "index.html names no hashed script: is the UI built (make ui)?"
    return found.group(1)


async def test_index_is_revalidated_and_assets_are_immutable(client: httpx.AsyncClient) -> None:
    for path in ("/ui", "/ui/", "/ui/chat", "/ui/knowledge/deep/link"):
        page = await client.get(path)
        assert page.status_code == 200, path
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-cache"
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        assert '<div id="root">' in page.text
    asset = built_asset()
    assert re.search(r"-[A-Za-z0-9_-]{8}\.js$", asset), asset
    script = await client.get(f"/ui/{asset}")
    assert script.status_code == 200
    assert script.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "javascript" in script.headers["content-type"]


async def test_missing_assets_and_escapes_are_404_not_the_app(client: httpx.AsyncClient) -> None:
    missing = await client.get("/ui/assets/index-00000000.js")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
    assert "Reload the page" in missing.json()["detail"]
    assert missing.headers["x-content-type-options"] == "nosniff"
    for path in ("/ui/assets/..%2F..%2F..%2Fconfig.py", "/ui/..%2F..%2Fapp.py"):
        response = await client.get(path)
        assert "create_app" not in response.text
        assert "BaseSettings" not in response.text


async def test_an_unbuilt_ui_says_how_to_build_it(
    client: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ui, "DIST", tmp_path)
    response = await client.get("/ui/")
    assert response.status_code == 503
    assert "make ui" in response.text
    assert "default-src 'self'" in response.headers["content-security-policy"]
    root = await client.get("/")
    assert root.json()["ui"] == "/ui"
