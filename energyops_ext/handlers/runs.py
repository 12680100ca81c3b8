"""/runs: list, show, kill, logs (JSON or the whole file), artifacts."""

from __future__ import annotations

import asyncio

from ..errors import BadRequest
from ..runs.compare import parse_ids
from ..runs.scripts import KINDS, MODEL_TYPES
from ..runs.service import Download
from ..runs.store import STATUSES
from .base import EnergyOpsHandler, allow

CHUNK = 256 * 1024


class RunsHandler(EnergyOpsHandler):
    @allow("read")
    async def get(self) -> None:
        limit, offset = self.page_args()
        self.write_json(
            await self.services.runs.list_runs(
                script_id=self.int_arg("script_id", None, minimum=1),
                kind=self.choice_arg("kind", KINDS),
                model_type=self.choice_arg("model_type", MODEL_TYPES),
                status=self.choice_arg("status", STATUSES),
                limit=limit,
                offset=offset,
            )
        )


class RunHandler(EnergyOpsHandler):
    @allow("read")
    async def get(self, run_id: str) -> None:
        self.write_json(await self.services.runs.get_run(int(run_id)))

    @allow("execute")
    async def delete(self, run_id: str) -> None:
        self.write_json(await self.services.runs.kill_run(int(run_id), self.user_name), 202)


class RunStopHandler(EnergyOpsHandler):
    @allow("execute")
    async def post(self, run_id: str) -> None:
        self.write_json(await self.services.runs.request_stop(int(run_id), self.user_name), 202)


class RunsCompareHandler(EnergyOpsHandler):
    @allow("read")
    async def get(self) -> None:
        try:
            ids = parse_ids(self.get_query_argument("ids", None))
        except ValueError as exc:
            raise BadRequest(str(exc), code="invalid_parameter", details={"field": "ids"}) from None
        self.write_json(await self.services.runs.compare_runs(ids))


class RunNotebookHandler(EnergyOpsHandler):
    @allow("read")
    async def get(self, run_id: str) -> None:
        fmt = self.get_query_argument("format", "ipynb")
        if fmt not in ("ipynb", "html"):
            raise BadRequest(
                "format must be ipynb or html",
                code="invalid_parameter",
                details={"field": "format"},
            )
        data, content_type = await self.services.runs.notebook(int(run_id), fmt)
        self.set_header("Content-Type", content_type)
        self.set_header("X-Content-Type-Options", "nosniff")
        if fmt == "html":
            # the HTML has no script; the policy forbids any that slipped through anyway
            self.set_header(
                "Content-Security-Policy",
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:",
            )
        else:
            self.set_header("Content-Disposition", f'attachment; filename="run-{run_id}.ipynb"')
        # text/html on purpose (the base class keeps HTML out of API answers otherwise)
        self.finish(data, set_content_type=content_type)


class RunLogsHandler(EnergyOpsHandler):
    @allow("read")
    async def get(self, run_id: str) -> None:
        fmt = self.get_query_argument("format", "json")
        if fmt not in ("json", "text"):
            raise BadRequest(
                "format must be json or text", code="invalid_parameter", details={"field": "format"}
            )
        if fmt == "text":
            await self._download(int(run_id))
            return
        after = self.int_arg("after", 0, minimum=0)
        limit = self.int_arg("limit", 1000, minimum=1, maximum=10000)
        assert after is not None
        lines = await self.services.runs.read_logs(
            int(run_id),
            after,
            limit,
            self.get_query_argument("stream", None) or None,
            self.get_query_argument("level", None) or None,
        )
        self.write_json(
            {
                "run_id": int(run_id),
                "items": lines,
                "next_after": lines[-1]["seq"] if lines else after,
            }
        )

    async def _download(self, run_id: int) -> None:
        download = await self.services.runs.log_download(run_id)
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.set_header("Content-Disposition", f'attachment; filename="{download.name}"')
        self.set_header("X-Content-Type-Options", "nosniff")
        await _stream(self, download)


class RunArtifactsHandler(EnergyOpsHandler):
    @allow("read")
    async def get(self, run_id: str) -> None:
        items = await self.services.runs.artifacts(int(run_id))
        self.write_json({"run_id": int(run_id), "items": items})


class RunArtifactHandler(EnergyOpsHandler):
    @allow("read")
    async def get(self, run_id: str, name: str) -> None:
        artifact = await self.services.runs.artifact(int(run_id), name)
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Disposition", f'attachment; filename="{artifact.name}"')
        self.set_header("X-Content-Type-Options", "nosniff")
        await _stream(self, artifact)


async def _stream(handler: EnergyOpsHandler, download: Download) -> None:
    fh = await asyncio.to_thread(download.open)
    try:
        while chunk := await asyncio.to_thread(fh.read, CHUNK):
            handler.write(chunk)
            await handler.flush()
    finally:
        await asyncio.to_thread(fh.close)
    handler.finish()


routes = [
    (r"/runs", RunsHandler),
    (r"/runs/compare", RunsCompareHandler),
    (r"/runs/(\d+)", RunHandler),
    (r"/runs/(\d+)/stop", RunStopHandler),
    (r"/runs/(\d+)/notebook", RunNotebookHandler),
    (r"/runs/(\d+)/logs", RunLogsHandler),
    (r"/runs/(\d+)/artifacts", RunArtifactsHandler),
    (r"/runs/(\d+)/artifacts/([^/]+)", RunArtifactHandler),
]
