"""Alert rules on market data: CRUD and each rule's history of state changes."""

from __future__ import annotations

from ..alerts.rules import STATES
from .base import EnergyOpsHandler, allow


class AlertsHandler(EnergyOpsHandler):
    @allow("read")
    async def get(self) -> None:
        limit, offset = self.page_args()
        state = self.choice_arg("state", STATES)
        enabled = self.get_query_argument("enabled", None)
        only = None if enabled is None else self.bool_arg("enabled")
        self.write_json(
            await self.services.alerts.list_rules(
                limit=limit, offset=offset, state=state, enabled=only
            )
        )

    @allow("write")
    async def post(self) -> None:
        rule = await self.services.alerts.create(self.json_body(), self.user_name)
        self.write_json(rule, 201)


class AlertHandler(EnergyOpsHandler):
    @allow("read")
    async def get(self, rule_id: str) -> None:
        self.write_json(await self.services.alerts.get(int(rule_id)))

    @allow("write")
    async def patch(self, rule_id: str) -> None:
        self.write_json(await self.services.alerts.update(int(rule_id), self.json_body()))

    @allow("write")
    async def delete(self, rule_id: str) -> None:
        await self.services.alerts.delete(int(rule_id))
        self.set_status(204)
        self.finish()


class AlertHistoryHandler(EnergyOpsHandler):
    @allow("read")
    async def get(self, rule_id: str) -> None:
        limit, offset = self.page_args()
        self.write_json(
            await self.services.alerts.history(int(rule_id), limit=limit, offset=offset)
        )


routes = [
    (r"/alerts", AlertsHandler),
    (r"/alerts/(\d+)", AlertHandler),
    (r"/alerts/(\d+)/history", AlertHistoryHandler),
]
