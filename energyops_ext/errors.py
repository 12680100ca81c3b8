"""Domain errors.

Services raise these where a problem is known; ``handlers.base`` maps them to the JSON error
shape of the API in one place. They carry an HTTP status but know nothing of Tornado.
"""

from __future__ import annotations

from typing import Any


class EnergyOpsError(Exception):
    """An error a client can act on: it has a status, a stable code and a human message."""

    status: int = 500
    code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or {}

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}


class BadRequest(EnergyOpsError):
    status = 400
    code = "bad_request"


class Forbidden(EnergyOpsError):
    status = 403
    code = "forbidden"


class NotFound(EnergyOpsError):
    status = 404
    code = "not_found"


class Conflict(EnergyOpsError):
    status = 409
    code = "conflict"


class TooLarge(EnergyOpsError):
    status = 413
    code = "too_large"


class UnsupportedMediaType(EnergyOpsError):
    status = 415
    code = "unsupported_media_type"


class Invalid(EnergyOpsError):
    status = 422
    code = "invalid"


class Unavailable(EnergyOpsError):
    status = 503
    code = "unavailable"


def format_size(n_bytes: int) -> str:
    """Human size for messages: ``6.2 MB``, ``512 KB``, ``80 bytes`` (decimal units)."""
    if n_bytes >= 1_000_000:
        return f"{n_bytes / 1_000_000:.1f} MB".replace(".0 MB", " MB")
    if n_bytes >= 1_000:
        return f"{n_bytes / 1_000:.1f} KB".replace(".0 KB", " KB")
    return f"{n_bytes} bytes"


def check_name(name: str, field: str = "name") -> str:
    """Refuse a user-given name that could be read as a path (API.md, security rules)."""
    if not name or not name.strip():
        raise BadRequest(
            f"{field} must not be empty", code="invalid_name", details={"field": field}
        )
    bad = [tok for tok in ("/", "\\", "..", "\x00") if tok in name]
    if bad:
        shown = ", ".join("NUL" if tok == "\x00" else repr(tok) for tok in bad)
        raise BadRequest(
            f"{field} {name!r} must not contain {shown}",
            code="invalid_name",
            details={"field": field},
        )
    if len(name) > 255:
        raise BadRequest(
            f"{field} is {len(name)} characters; the limit is 255",
            code="invalid_name",
            details={"field": field},
        )
    return name
