"""What every EnergyOps handler shares: auth resource, services, JSON in and out, errors."""

from __future__ import annotations

import functools
from asyncio import Future
from collections.abc import Callable
from http import HTTPStatus
from types import TracebackType
from typing import Any, TypeVar, cast
from urllib.parse import unquote_plus

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web

from ..errors import BadRequest, EnergyOpsError, Invalid, NotFound, TooLarge, format_size
from ..events.protocol import (
    MAX_JSON_DEPTH,
    JSONTooDeep,
    NonFiniteNumber,
    UnreadableJSON,
    decode_json,
    encode_json,
)
from ..services import Services

AUTH_RESOURCE = "energyops"

ExcInfo = tuple[type[BaseException], BaseException, TracebackType]

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    500: "internal_error",
    503: "unavailable",
}


Method = TypeVar("Method", bound=Callable[..., Any])


def allow(action: str) -> Callable[[Method], Method]:
    """``@web.authenticated`` + jupyter_server's ``@authorized(action)`` on resource
    ``energyops``, as one typed decorator. ``action`` is read, write or execute."""

    def wrap(method: Method) -> Method:
        wrapped = web.authenticated(authorized(action)(ids_in_range(method)))
        wrapped.energyops_action = action  # type: ignore[attr-defined]
        return cast(Method, wrapped)

    return wrap


MAX_ID = 2**31 - 1


def too_big(digits: str) -> bool:
    digits = digits.lstrip("0")
    return len(digits) > len(str(MAX_ID)) or int(digits or "0") > MAX_ID


def ids_in_range(method: Method) -> Method:
    """A numeric path argument past the largest id a table can hold is an id that does not
    exist: 404, instead of an integer overflow in the database driver."""

    @functools.wraps(method)
    def check(self: Any, *args: Any, **kwargs: Any) -> Any:
        for arg in args:
            if isinstance(arg, str) and arg.isdecimal() and too_big(arg):
                raise NotFound(
                    f"no such id: {arg[:40]} is past the largest id ({MAX_ID})", code="not_found"
                )
        return method(self, *args, **kwargs)

    return cast(Method, check)


MAX_JSON_BODY_BYTES = 1_000_000

SECRET_QUERY_KEYS = ("token", "auth", "key", "code", "state", "xsrf")


def scrub_uri(uri: str) -> str:
    """``uri`` with the values of credential-like query parameters replaced by ``[secret]``
    (the same keys jupyter_server scrubs in its access log): tokens never reach the logs."""
    path, sep, query = uri.partition("?")
    if not sep:
        return uri
    parts = []
    for part in query.split("&"):
        key, eq, _value = part.partition("=")
        secret = eq and any(word in unquote_plus(key).lower() for word in SECRET_QUERY_KEYS)
        parts.append(f"{key}=[secret]" if secret else part)
    return f"{path}?{'&'.join(parts)}"


def dumps(data: Any) -> str:
    """Compact strict JSON: dates as ISO 8601, a non-finite float as null."""
    return encode_json(data)


def error_body(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> str:
    body: dict[str, Any] = {"status": status, "code": code, "message": message}
    if details:
        body["details"] = details
    return dumps({"error": body})


def nul_path(value: Any, path: str = "") -> str | None:
    """The path of the first text (or key) in ``value`` holding a NUL character, which
    PostgreSQL cannot store in text (SQLite would): both refuse it alike, before any write."""
    if isinstance(value, str):
        return (path or "value") if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            name = key.replace("\x00", "\\u0000")  # the message names it, never holds it
            here = f"{path}.{name}" if path else name
            if "\x00" in key:
                return here
            found = nul_path(item, here)
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = nul_path(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def refuse_nul(value: Any) -> None:
    """422 ``nul_in_text`` naming the first field of ``value`` (a JSON body, a form's fields)
    that holds a NUL character."""
    where = nul_path(value)
    if where is not None:
        raise Invalid(
            f"{where} must not contain NUL (U+0000) characters",
            code="nul_in_text",
            details={"field": where},
        )


class EnergyOpsHandler(APIHandler):
    """Base of every EnergyOps route. Subclasses decorate each method with
    ``@web.authenticated`` and ``@authorized`` (action read / write / execute)."""

    auth_resource = AUTH_RESOURCE

    @property
    def services(self) -> Services:
        services: Services = self.settings["energyops"]
        return services

    @property
    def user_name(self) -> str:
        user = self.current_user
        return str(getattr(user, "username", None) or getattr(user, "name", None) or "anonymous")

    # --- output ---

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(dumps(data))

    def finish(self, *args: Any, **kwargs: Any) -> Future[None]:
        """jupyter_server's APIHandler.finish forces ``application/json``; keep a Content-Type
        the handler set itself (yaml, csv, xlsx, text downloads)."""
        if "set_content_type" not in kwargs:
            current = str(self._headers.get("Content-Type", ""))
            if current and not current.startswith("text/html"):
                kwargs["set_content_type"] = current
        return super().finish(*args, **kwargs)

    # --- input ---

    def json_body(self) -> dict[str, Any]:
        """The request body as a JSON object: at most ``MAX_JSON_BODY_BYTES`` (413), nested at
        most ``MAX_JSON_DEPTH`` levels (400), every number finite (422, naming the field)."""
        raw = self.request.body
        if not raw:
            return {}
        if len(raw) > MAX_JSON_BODY_BYTES:
            raise TooLarge(
                f"request body is {format_size(len(raw))}; "
                f"the limit for JSON bodies is {format_size(MAX_JSON_BODY_BYTES)}",
                code="body_too_large",
                details={"limit": MAX_JSON_BODY_BYTES},
            )
        try:
            body = decode_json(raw, "request body")
        except NonFiniteNumber as exc:
            raise Invalid(exc.message, code=exc.code, details={"field": exc.path}) from None
        except JSONTooDeep as exc:
            raise BadRequest(
                exc.message, code=exc.code, details={"limit": MAX_JSON_DEPTH}
            ) from None
        except UnreadableJSON as exc:
            raise BadRequest(exc.message, code=exc.code) from None
        if not isinstance(body, dict):
            raise BadRequest("request body must be a JSON object", code="invalid_json")
        refuse_nul(body)
        return body

    def int_arg(
        self, name: str, default: int | None = None, *, minimum: int = 0, maximum: int = 2**31 - 1
    ) -> int | None:
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise BadRequest(
                f"{name} must be an integer, got {raw!r}",
                code="invalid_parameter",
                details={"field": name},
            ) from None
        if not minimum <= value <= maximum:
            raise BadRequest(
                f"{name} must be between {minimum} and {maximum}, got {value}",
                code="invalid_parameter",
                details={"field": name},
            )
        return value

    def choice_arg(self, name: str, allowed: tuple[str, ...]) -> str | None:
        """An optional query argument that must be one of ``allowed``."""
        value = self.get_query_argument(name, None) or None
        if value is not None and value not in allowed:
            raise BadRequest(
                f"{name} must be one of {', '.join(allowed)}; got {value!r}",
                code="invalid_parameter",
                details={"field": name},
            )
        return value

    def bool_arg(self, name: str, default: bool = False) -> bool:
        raw = self.get_query_argument(name, None)
        if raw is None:
            raw = self.get_body_argument(name, None) if self._is_form() else None
        if raw is None or raw == "":
            return default
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise BadRequest(
            f"{name} must be true or false, got {raw!r}",
            code="invalid_parameter",
            details={"field": name},
        )

    def page_args(self, default_limit: int = 50, max_limit: int = 1000) -> tuple[int, int]:
        """``limit``/``offset`` or ``page``/``per_page`` paging; returns (limit, offset)."""
        per_page = self.int_arg("per_page", None, minimum=1, maximum=max_limit)
        page = self.int_arg("page", None, minimum=1)
        if per_page is not None or page is not None:
            size = per_page or default_limit
            return size, ((page or 1) - 1) * size
        limit = self.int_arg("limit", default_limit, minimum=1, maximum=max_limit)
        offset = self.int_arg("offset", 0, minimum=0)
        assert limit is not None and offset is not None
        return limit, offset

    def _is_form(self) -> bool:
        content_type = self.request.headers.get("Content-Type", "")
        return content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded"))

    # --- errors: one place turns every failure into the JSON error shape ---

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc_info: ExcInfo | None = kwargs.get("exc_info")
        if exc_info is not None and isinstance(exc_info[1], EnergyOpsError):
            status_code = exc_info[1].status
        super().send_error(status_code, **kwargs)

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(value, EnergyOpsError):
            self.log.info("%s: %s %s", self._request_summary(), value.status, value.message)
            return
        if isinstance(value, web.HTTPError):
            super().log_exception(typ, value, tb)
            return
        self.log.error("Uncaught exception %s", self._request_summary(), exc_info=value)

    def _request_summary(self) -> str:
        request = self.request
        return f"{request.method} {scrub_uri(request.uri or '')} ({request.remote_ip})"

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        if isinstance(exc, EnergyOpsError):
            self.finish(error_body(exc.status, exc.code, exc.message, exc.details))
            return
        reason = (
            HTTPStatus(status_code).phrase if status_code in HTTPStatus._value2member_map_ else ""
        )
        message = reason
        if isinstance(exc, web.HTTPError):
            if status_code == 405:
                message = f"method {self.request.method} is not allowed on {self.request.path}"
            elif status_code == 403:
                message = exc.log_message or "forbidden: authentication or permission missing"
            elif exc.log_message:
                message = exc.log_message % exc.args if exc.args else exc.log_message
        elif status_code >= 500:
            message = "internal server error; see the server log"
        self.finish(error_body(status_code, HTTP_CODES.get(status_code, "error"), message))


class NotFoundHandler(EnergyOpsHandler):
    """Everything under the API base that no route matches: a JSON 404."""

    def _not_found(self, *args: Any) -> None:
        raise NotFound(
            f"no such API route: {self.request.method} {self.request.path}", code="no_route"
        )

    @allow("read")
    def get(self, *args: Any) -> None:
        self._not_found()

    @allow("read")
    def head(self, *args: Any) -> None:
        self._not_found()

    @allow("write")
    def post(self, *args: Any) -> None:
        self._not_found()

    @allow("write")
    def put(self, *args: Any) -> None:
        self._not_found()

    @allow("write")
    def patch(self, *args: Any) -> None:
        self._not_found()

    @allow("write")
    def delete(self, *args: Any) -> None:
        self._not_found()
