"""Events are small, typed records: a topic, a type and JSON data. The hub knows nothing else."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    topic: str
    type: str
    data: dict[str, Any] = field(default_factory=dict)

    def frame(self) -> dict[str, Any]:
        return {"topic": self.topic, "type": self.type, "data": self.data}


def run_topic(run_id: int) -> str:
    return f"run:{run_id}"


RUNS = "runs"
DATASETS = "datasets"
DASHBOARD = "dashboard"
NOTIFICATIONS = "notifications"
