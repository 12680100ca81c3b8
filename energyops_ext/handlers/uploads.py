"""The base of routes that take a multipart upload: the form is parsed as the body streams in.

Tornado hands each chunk of the body to ``data_received`` as it arrives (``@stream_request_body``)
and ``StreamingForm`` parses it there, writing file parts to their spool files from a worker
thread. Limits are kept twice: a Content-Length over the limit is refused in ``prepare``, before
any of the body is read, and a body that streams past it (chunked, or a Content-Length that
lies) is answered 413 at the chunk that crosses it; a malformed body gets its 400 at the byte
that is wrong. Either way the response goes out at once and the rest of the body is not read.
"""

from __future__ import annotations

import asyncio
import sys

from jupyter_core.utils import ensure_async
from tornado import web
from tornado.http1connection import HTTP1Connection

from ..errors import EnergyOpsError, TooLarge, format_size
from ..forms import FormData, StreamingForm
from .base import AUTH_RESOURCE, EnergyOpsHandler

# Room for the multipart framing and the form fields around the file.
MULTIPART_SLACK = 64 * 1024


@web.stream_request_body
class StreamingUploadHandler(EnergyOpsHandler):
    """Subclasses give ``upload_limit`` (the largest file the route takes) and may check the
    request in ``check_upload`` (before any of the body is read); ``post`` awaits ``form()``."""

    upload_action = "write"
    _form: StreamingForm | None = None

    def upload_limit(self) -> int:
        raise NotImplementedError

    def check_upload(self) -> None:
        """Refuse a request from its path and headers alone (e.g. an unknown kind: 404)."""

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        if self.request.method != "POST":
            return
        user = self.current_user
        if not user or not await ensure_async(
            self.authorizer.is_authorized(self, user, self.upload_action, AUTH_RESOURCE)
        ):
            raise web.HTTPError(
                403,
                f"User is not authorized to {self.upload_action} on resource: {AUTH_RESOURCE}.",
            )
        self.check_upload()
        limit = self.upload_limit()
        body_limit = limit + MULTIPART_SLACK
        length = int(self.request.headers.get("Content-Length") or 0)
        if length > body_limit:
            raise TooLarge(
                f"the upload is {format_size(length)}; the limit is {format_size(limit)}",
                details={"limit": limit},
            )
        connection = self.request.connection
        assert isinstance(connection, HTTP1Connection)
        # Tornado's own cut is a bare 400: keep it beyond ours, so ours (a 413) comes first.
        connection.set_max_body_size(body_limit + MULTIPART_SLACK)
        self._form = StreamingForm(
            self.request.headers.get("Content-Type", ""),
            self.services.settings.data_dir / "tmp",
            body_limit,
            format_size(limit),
        )

    async def data_received(self, chunk: bytes) -> None:
        form = self._form
        if form is None:
            return
        try:
            form.feed(chunk)
            if form.needs_flush:
                await asyncio.to_thread(form.flush)
        except EnergyOpsError:
            self._refuse()

    def _refuse(self) -> None:
        """Answer now with the error being handled; Tornado stops reading the body once the
        response is finished and closes the connection after it."""
        typ, exc, tb = sys.exc_info()
        assert typ is not None and exc is not None and tb is not None
        self.log_exception(typ, exc, tb)
        self.send_error(500, exc_info=(typ, exc, tb))

    async def form(self) -> FormData:
        """The whole form, once the body is in."""
        assert self._form is not None
        return await asyncio.to_thread(self._form.finish)

    def on_finish(self) -> None:
        self._discard_form()

    def on_connection_close(self) -> None:
        super().on_connection_close()  # ends the wait for the rest of the body
        self._discard_form()

    def _discard_form(self) -> None:
        form, self._form = self._form, None
        if form is not None:
            asyncio.get_running_loop().run_in_executor(None, form.close)
