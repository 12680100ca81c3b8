"""Dataset uploads, upload history and rows.

The upload form is parsed while the body streams in (``StreamingUploadHandler``): the file part
is written to its own spool file as it arrives and handed to the ingest service from there.
"""

from __future__ import annotations

from typing import Any

from ..errors import BadRequest, TooLarge, check_name, format_size
from ..forms import FormData
from ..ingest.market import date_range
from ..ingest.queries import get_upload, list_kinds, list_rows, list_uploads
from ..ingest.read import file_format
from ..ingest.schemas import get_kind
from ..ingest.service import UploadRequest
from .base import EnergyOpsHandler, allow, refuse_nul
from .uploads import StreamingUploadHandler

OPTIONS = ("sheet", "mode", "dry_run", "strict")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


class DatasetUploadsHandler(StreamingUploadHandler):
    """POST a file (parsed as it streams in), GET the upload history of a kind."""

    def upload_limit(self) -> int:
        return self.services.settings.max_upload_bytes

    def check_upload(self) -> None:
        get_kind(self.path_args[0])

    @allow("read")
    async def get(self, kind_name: str) -> None:
        kind = get_kind(kind_name)
        limit, offset = self.page_args()
        self.write_json(await self.services.db.read(lambda s: list_uploads(s, kind, limit, offset)))

    @allow("write")
    async def post(self, kind_name: str) -> None:
        kind = get_kind(kind_name)
        request = self._upload_request(kind.name, await self.form())
        report = await self.services.ingest.upload(request)
        self.write_json(report, 201)

    def _upload_request(self, kind: str, form: FormData) -> UploadRequest:
        parts = [f for f in form.files if f.name == "file"]
        if not parts:
            raise BadRequest(
                "no file: send the dataset as a multipart part named 'file'",
                code="missing_file",
                details={"field": "file"},
            )
        part = parts[0]
        check_name(part.filename, "filename")
        file_format(part.filename)  # a wrong extension is a 415 before anything is stored
        limit = self.services.settings.max_upload_bytes
        if part.size > limit:
            raise TooLarge(
                f"the file is {format_size(part.size)}; the limit is {format_size(limit)}",
                details={"limit": limit},
            )
        assert part.path is not None
        values = {**form.fields}
        for name in OPTIONS:
            query = self.get_query_argument(name, None)
            if query is not None:
                values[name] = query
        sheet = values.pop("sheet", None) or None
        if sheet is not None:
            check_name(sheet, "sheet")
        mode = (values.pop("mode", None) or "upsert").strip().lower()
        dry_run = _flag("dry_run", values.pop("dry_run", None))
        strict = _flag("strict", values.pop("strict", None))
        defaults = {k: v.strip() for k, v in values.items() if v.strip()}
        refuse_nul(defaults)  # column values (market=...), refused as in a JSON body
        return UploadRequest(
            kind=kind,
            path=part.path,
            filename=part.filename,
            user=self.user_name,
            sheet=sheet,
            mode=mode,
            dry_run=dry_run,
            strict=strict,
            defaults=defaults,
        )


def _flag(name: str, raw: str | None) -> bool:
    value = (raw or "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadRequest(
        f"{name} must be true or false, got {raw!r}",
        code="invalid_parameter",
        details={"field": name},
    )


class DatasetsHandler(EnergyOpsHandler):
    @allow("read")
    async def get(self) -> None:
        self.write_json(await self.services.db.read(list_kinds))


class UploadHandler(EnergyOpsHandler):
    @allow("read")
    async def get(self, upload_id: str) -> None:
        uid = int(upload_id)
        self.write_json(await self.services.db.read(lambda s: get_upload(s, uid)))


class DatasetRowsHandler(EnergyOpsHandler):
    @allow("read")
    async def get(self, kind_name: str) -> None:
        kind = get_kind(kind_name)
        span = date_range(
            None, self.get_query_argument("from", None), self.get_query_argument("to", None)
        )
        limit = self.int_arg("limit", 100, minimum=1, maximum=5000)
        assert limit is not None
        cursor = self.get_query_argument("cursor", None) or None
        filters: dict[str, Any] = {}
        for key in kind.key:
            if key == "date":
                continue
            raw = self.get_query_argument(key, None)
            if raw is not None:
                filters[key] = self.int_arg(key, minimum=1, maximum=96) if key == "block" else raw
        self.write_json(
            await self.services.db.read(lambda s: list_rows(s, kind, span, filters, limit, cursor))
        )


routes = [
    (r"/datasets", DatasetsHandler),
    (r"/datasets/([^/]+)/uploads", DatasetUploadsHandler),
    (r"/datasets/([^/]+)/rows", DatasetRowsHandler),
    (r"/uploads/(\d+)", UploadHandler),
]
