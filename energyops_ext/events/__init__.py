"""Live events: topics, subscribers, replay."""

from .hub import EventHub
from .types import DASHBOARD, DATASETS, NOTIFICATIONS, RUNS, Event, run_topic

__all__ = ["DASHBOARD", "DATASETS", "NOTIFICATIONS", "RUNS", "Event", "EventHub", "run_topic"]
