"""One error shape everywhere: {"detail", "code", "request_id"} (plus "errors" for 422)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from mtai.context import REQUEST_ID_SCOPE_KEY, request_id_var
from mtai.errors import AppError
from mtai.logging import get_logger

log = get_logger(__name__)

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "service_unavailable",
}


_OPENAI_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}


# Anthropic's error types by status (https://docs.anthropic.com/en/api/errors); other 4xx are
# invalid requests, other 5xx api errors.
_ANTHROPIC_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


SCIM_ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


def is_scim_path(path: str) -> bool:
    return path.startswith("/scim/")


def scim_error_body(status: int, detail: str, scim_type: str | None = None) -> dict[str, Any]:
    """RFC 7644 §3.12's error shape, which identity providers' SCIM clients read."""
    body: dict[str, Any] = {"schemas": [SCIM_ERROR_SCHEMA], "status": str(status), "detail": detail}
    if scim_type:
        body["scimType"] = scim_type
    return body


def is_openai_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


def is_anthropic_path(path: str) -> bool:
    return path == "/v1/messages" or path.startswith("/v1/messages/")


def anthropic_error_body(status: int, detail: str) -> dict[str, Any]:
    """Anthropic's error shape, so its SDK raises its usual exceptions with our message."""
    kind = _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {
        "type": "error",
        "error": {"type": kind, "message": detail},
        "request_id": request_id_var.get(),
    }


def error_body(
    status: int, detail: str, code: str | None = None, *, path: str = "", **extra: Any
) -> dict[str, Any]:
    code = code or _STATUS_CODES.get(status, "error")
    if is_scim_path(path):
        # What fails before the SCIM router answers (unknown path, method, body size).
        return scim_error_body(status, detail)
    if is_anthropic_path(path):
        return anthropic_error_body(status, detail)
    if is_openai_path(path):
        # OpenAI's own shape, so its SDKs raise their usual exceptions with our message.
        kind = _OPENAI_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {
            "error": {"message": detail, "type": kind, "param": extra.get("param"), "code": code},
            "request_id": request_id_var.get(),
        }
    return {"detail": detail, "code": code, "request_id": request_id_var.get(), **extra}


def error_response(
    request: Request,
    status: int,
    detail: str,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    path = request.url.path
    if status == 422 and (is_openai_path(path) or is_scim_path(path)):
        status = 400  # OpenAI, Anthropic and SCIM answer invalid requests with 400
    if is_anthropic_path(path) and (request_id := request_id_var.get()):
        headers = {**(headers or {}), "request-id": request_id}  # where Anthropic's SDK looks
    body = error_body(status, detail, code, path=path, **extra)
    return JSONResponse(body, status_code=status, headers=headers)


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else exc.headers
    # The request field at fault, where the error names one (OpenAI's `param`).
    extra: dict[str, Any] = {**exc.extra}
    if param := getattr(exc, "param", None):
        extra["param"] = param
    return error_response(request, exc.status_code, exc.detail, exc.code, headers=headers, **extra)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # The offending input is left out on purpose: it may be a password.
    errors = [{"loc": _location(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
    summary = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors[:5])
    return error_response(
        request, 422, f"Invalid request: {summary}", "validation_error", errors=errors
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else "Request failed."
    if exc.status_code == 404 and detail == "Not Found":
        detail = "No such endpoint; see /docs for the API."
    return error_response(request, exc.status_code, detail, headers=getattr(exc, "headers", None))


async def _integrity_error(request: Request, exc: Exception) -> JSONResponse:
    log.info("integrity_error", error=str(getattr(exc, "orig", exc))[:300])
    return error_response(
        request, 409, "This conflicts with existing data (duplicate or in use).", "conflict"
    )


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    # Starlette runs this outside the request-context middleware: the id comes from the scope.
    request_id: str | None = request.scope.get(REQUEST_ID_SCOPE_KEY)
    token = request_id_var.set(request_id)
    try:
        log.exception("unhandled_error", exc_info=exc, request_id=request_id)
        return error_response(
            request,
            500,
            f"Internal error. Quote request id {request_id} when reporting it.",
            "internal_error",
            headers={"X-Request-ID": request_id} if request_id else None,
        )
    finally:
        request_id_var.reset(token)


def install(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(Exception, _unhandled)
