"""The web UI at /ui: the built single-page app (frontend/ → src/mtai/web/dist).

Assets carry content hashes in their names, so they are cached for a year; index.html is
revalidated on every load, so a new release is picked up at once. Every other path under /ui
is a page of the app and gets index.html, which routes in the browser.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from mtai.api.errors import error_body

router = APIRouter(prefix="/ui", include_in_schema=False)

DIST = Path(__file__).resolve().parents[2] / "web" / "dist"
ASSETS_PREFIX = "assets/"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
# Scripts and connections only from this origin: an injected <script> or a leak to another
# host is refused by the browser. Chart.js sizes its canvas through style attributes.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
NOT_BUILT = (
    "<!doctype html><title>mtai: web UI not built</title>"
    "<h1>The web UI has not been built</h1>"
    "<p>Build it with <code>make ui</code> (npm ci and npm run build in <code>frontend/</code>); "
    "<code>make run</code> does this for you. The API itself works: see <a href='/docs'>/docs</a>."
)


def _file(path: Path, cache: str) -> FileResponse:
    return FileResponse(path, headers={"Cache-Control": cache, **SECURITY_HEADERS})


def _inside(relative: str) -> Path | None:
    """The file under DIST that the path names, or None (missing, or outside DIST)."""
    candidate = (DIST / relative).resolve()
    if not candidate.is_relative_to(DIST) or not candidate.is_file():
        return None
    return candidate


def _index() -> Response:
    index = DIST / "index.html"
    if not index.is_file():
        return HTMLResponse(
            NOT_BUILT, status_code=503, headers={"Retry-After": "60", **SECURITY_HEADERS}
        )
    return _file(index, REVALIDATE)


@router.get("")
@router.get("/")
async def app_root() -> Response:
    return _index()


@router.get("/{path:path}")
async def app_path(path: str) -> Response:
    found = _inside(path)
    if path.startswith(ASSETS_PREFIX):
        # A missing asset is a 404, not the app: a stale page must not get HTML as a script.
        if found is None:
            return JSONResponse(
                error_body(
                    404, f"No such UI asset: /ui/{path}. Reload the page.", path=f"/ui/{path}"
                ),
                status_code=404,
                headers=SECURITY_HEADERS,
            )
        return _file(found, IMMUTABLE)
    if found is not None and found.name != "index.html":
        return _file(found, REVALIDATE)
    return _index()
