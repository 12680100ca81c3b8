"""/schedules: list, create, show, change (pause/resume), delete, and the fires of a slot."""

from __future__ import annotations

from ..schedules.service import FIRE_STATUSES, ScheduleService, parse_since
from .base import EnergyOpsHandler, allow


class ScheduleHandlerBase(EnergyOpsHandler):
    @property
    def schedules(self) -> ScheduleService:
        service = self.services.schedules
        assert service is not None
        return service


class SchedulesHandler(ScheduleHandlerBase):
    @allow("read")
    async def get(self) -> None:
        limit, offset = self.page_args()
        enabled = self.get_query_argument("enabled", None)
        self.write_json(
            await self.schedules.list_schedules(
                enabled=None if enabled is None else self.bool_arg("enabled"),
                limit=limit,
                offset=offset,
            )
        )

    @allow("execute")
    async def post(self) -> None:
        self.write_json(await self.schedules.create(self.json_body(), self.user_name), 201)


class ScheduleHandler(ScheduleHandlerBase):
    @allow("read")
    async def get(self, schedule_id: str) -> None:
        self.write_json(await self.schedules.get(int(schedule_id)))

    @allow("execute")
    async def patch(self, schedule_id: str) -> None:
        self.write_json(
            await self.schedules.update(int(schedule_id), self.json_body(), self.user_name)
        )

    @allow("write")
    async def delete(self, schedule_id: str) -> None:
        await self.schedules.delete(int(schedule_id), self.user_name)
        self.set_status(204)
        self.finish()


class ScheduleFiresHandler(ScheduleHandlerBase):
    @allow("read")
    async def get(self, schedule_id: str) -> None:
        limit, offset = self.page_args()
        self.write_json(
            await self.schedules.fires(
                int(schedule_id),
                limit=limit,
                offset=offset,
                since=parse_since(self.get_query_argument("since", None)),
                status=self.choice_arg("status", FIRE_STATUSES),
            )
        )


routes = [
    (r"/schedules", SchedulesHandler),
    (r"/schedules/(\d+)", ScheduleHandler),
    (r"/schedules/(\d+)/fires", ScheduleFiresHandler),
]
