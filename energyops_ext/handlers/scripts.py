"""/scripts: upload, list, show, source, archive/restore, delete, and start runs."""

from __future__ import annotations

import asyncio
from typing import Any

from ..errors import BadRequest
from ..forms import FormData
from ..runs.scripts import KINDS, MODEL_TYPES, STATUSES
from .base import EnergyOpsHandler, allow
from .uploads import StreamingUploadHandler


class ScriptsHandler(StreamingUploadHandler):
    def upload_limit(self) -> int:
        """The larger of the two limits: the kind is a form field, known only once the form
        is in; the service then checks the limit of that kind."""
        settings = self.services.settings
        return max(settings.max_test_script_bytes, settings.max_model_bytes)

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
        form = await self.form()
        files = [f for f in form.files if f.name == "file"]
        if len(files) != 1 or files[0].path is None:
            raise BadRequest(
                "send exactly one file in the multipart field 'file'",
                code="missing_file",
                details={"field": "file"},
            )
        data = await asyncio.to_thread(files[0].path.read_bytes)
        script, created = await self.services.runs.upload_script(
            files[0].filename,
            data,
            _field(form, "kind"),
            _field(form, "model_type"),
            _field(form, "description"),
            self.user_name,
        )
        self.write_json(script, 201 if created else 200)


def _field(form: FormData, name: str) -> str | None:
    """A form field as Tornado's ``get_body_argument`` gave it: stripped, None when absent."""
    value = form.fields.get(name)
    return None if value is None else value.strip()


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
