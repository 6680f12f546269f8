"""Domain errors. Services raise these; the API turns each into the one JSON error shape."""

from __future__ import annotations


class AppError(Exception):
    status_code = 400
    code = "bad_request"
    headers: dict[str, str] | None = None  # e.g. Retry-After on 429 and 503

    def __init__(
        self, detail: str, *, code: str | None = None, extra: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.extra = extra or {}  # more fields of the error's body, e.g. the tenant concerned


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class NotFound(AppError):
    """Also what a caller gets for another tenant's object: its existence is not revealed."""

    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class Gone(AppError):
    """Something that existed and can no longer be used (a used or expired invitation)."""

    status_code = 410
    code = "gone"


class InvalidInput(AppError):
    status_code = 422
    code = "validation_error"


class TooLarge(AppError):
    status_code = 413
    code = "payload_too_large"


class ServiceUnavailable(AppError):
    status_code = 503
    code = "service_unavailable"


class ConfigurationError(Exception):
    """Settings or environment that make it unsafe or impossible to start; message says the fix."""
