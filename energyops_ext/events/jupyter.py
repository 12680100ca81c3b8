"""Lifecycle events on jupyter_server's own event bus (jupyter_events).

JupyterLab front-end code listens on ``/api/events/subscribe`` for the schema ids below; log
lines and dashboard pushes stay on the EnergyOps socket.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jupyter_events import EventLogger

from .hub import Listener
from .protocol import encode_frame
from .types import Event

SCHEMA_DIR = Path(__file__).parent / "schemas"
RUN_SCHEMA = "https://energyops.dev/events/run/v1"
DATASET_SCHEMA = "https://energyops.dev/events/dataset/v1"
NOTIFICATION_SCHEMA = "https://energyops.dev/events/notification/v1"

SCHEMA_BY_TYPE = {
    "run.queued": RUN_SCHEMA,
    "run.started": RUN_SCHEMA,
    "run.finished": RUN_SCHEMA,
    "dataset.uploaded": DATASET_SCHEMA,
    "notification.new": NOTIFICATION_SCHEMA,
}


def load_schemas() -> list[dict[str, Any]]:
    return [json.loads(path.read_text("utf-8")) for path in sorted(SCHEMA_DIR.glob("*.json"))]


def register_schemas(event_logger: EventLogger) -> None:
    """Register every EnergyOps schema once (a second call is a no-op)."""
    known = set(event_logger.schemas.schema_ids)
    for schema in load_schemas():
        if schema["$id"] not in known:
            event_logger.register_event_schema(schema)


def lifecycle_payload(event: Event) -> dict[str, Any]:
    """The jupyter_events payload of ``event``: plain JSON (dates as ISO strings)."""
    frame: dict[str, Any] = json.loads(encode_frame(event.topic, event.type, event.data))
    return frame


def forward_lifecycle(event_logger: EventLogger) -> Listener:
    """A hub listener that emits the lifecycle events on ``event_logger``."""

    def listener(event: Event) -> None:
        schema_id = SCHEMA_BY_TYPE.get(event.type)
        if schema_id is not None:
            event_logger.emit(schema_id=schema_id, data=lifecycle_payload(event))

    return listener
