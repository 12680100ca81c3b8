"""/scripts: upload, list, show, source, archive/restore, delete, and start runs."""

from __future__ import annotations

from typing import Any

from ..errors import BadRequest
from ..runs.scripts import KINDS, MODEL_TYPES, STATUSES
from .base import EnergyOpsHandler, allow


class ScriptsHandler(EnergyOpsHandler):
    @allow("read")
    async def get(self) -> None:
        limit, offset = self.page_args()
        filters: dict[str, Any] = {
            "kind": self.choice_arg("kind", KINDS),
            "model_type": self.choice_arg("model_type", MODEL_TYPES),
            "status": self.choice_arg("status", STATUSES),
            "q": self.get_query_argument("q", None) or None,
        }
        self.write_json(
            await self.services.runs.list_scripts(limit=limit, offset=offset, **filters)
        )

    @allow("write")
    async def post(self) -> None:
        files = self.request.files.get("file") or []
        if len(files) != 1:
            raise BadRequest(
                "send exactly one file in the multipart field 'file'",
                code="missing_file",
                details={"field": "file"},
            )
        upload = files[0]
        script, created = await self.services.runs.upload_script(
            upload.filename,
            upload.body,
            self.get_body_argument("kind", None),
            self.get_body_argument("model_type", None),
            self.get_body_argument("description", None),
            self.user_name,
        )
        self.write_json(script, 201 if created else 200)


class ScriptHandler(EnergyOpsHandler):
    @allow("read")
    async def get(self, script_id: str) -> None:
        self.write_json(await self.services.runs.get_script(int(script_id)))

    @allow("write")
    async def patch(self, script_id: str) -> None:
        body = self.json_body()
        unknown = sorted(set(body) - {"status", "description"})
        if unknown or not body:
            raise BadRequest(
                "send status (active or archived) and/or description"
                + (f"; unknown fields: {', '.join(unknown)}" if unknown else ""),
                code="invalid_field",
            )
        self.write_json(
            await self.services.runs.update_script(int(script_id), body, self.user_name)
        )

    @allow("write")
    async def delete(self, script_id: str) -> None:
        force = self.bool_arg("force", False)
        await self.services.runs.delete_script(int(script_id), force, self.user_name)
        self.set_status(204)
        self.finish()


class ScriptSourceHandler(EnergyOpsHandler):
    @allow("read")
    async def get(self, script_id: str) -> None:
        source = await self.services.runs.script_source(int(script_id))
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(source)


class ScriptRunsHandler(EnergyOpsHandler):
    @allow("execute")
    async def post(self, script_id: str) -> None:
        run = await self.services.runs.create_run(int(script_id), self.json_body(), self.user_name)
        self.write_json(run, 202)


routes = [
    (r"/scripts", ScriptsHandler),
    (r"/scripts/(\d+)", ScriptHandler),
    (r"/scripts/(\d+)/source", ScriptSourceHandler),
    (r"/scripts/(\d+)/runs", ScriptRunsHandler),
]
