"""Events are small, typed records: a topic, a type and JSON data. The hub knows nothing else."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    topic: str
    type: str
    data: dict[str, Any] = field(default_factory=dict)
    # published on another server and relayed here (so it is not relayed again)
    remote: bool = False

    def frame(self) -> dict[str, Any]:
        return {"topic": self.topic, "type": self.type, "data": self.data}


def run_topic(run_id: int) -> str:
    return f"run:{run_id}"


RUNS = "runs"
DATASETS = "datasets"
DASHBOARD = "dashboard"
NOTIFICATIONS = "notifications"
ALERTS = "alerts"
SCHEDULES = "schedules"

FIXED_TOPICS = frozenset({RUNS, DATASETS, DASHBOARD, NOTIFICATIONS, ALERTS, SCHEDULES})
RUN_TOPIC_PREFIX = "run:"


def is_topic(topic: object) -> bool:
    """A topic clients may subscribe to: a fixed topic or ``run:<id>`` with a positive id."""
    if not isinstance(topic, str):
        return False
    if topic in FIXED_TOPICS:
        return True
    rest = topic.removeprefix(RUN_TOPIC_PREFIX)
    return rest != topic and rest.isascii() and rest.isdigit() and int(rest) > 0 and len(rest) < 12


def run_id_of(topic: str) -> int:
    """The run id of a ``run:<id>`` topic (the topic is known to be valid)."""
    return int(topic.removeprefix(RUN_TOPIC_PREFIX))
