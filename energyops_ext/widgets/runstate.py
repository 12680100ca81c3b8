"""What the panels know of each run: one store fed by REST reads and by the run events, so a
progress bar, a runs table and a runs list show the same numbers from the same event.

No widgets here: the merge rules are tested without a server."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .client import FINISHED
from .events import EventStream

Event = Mapping[str, Any]
RunState = dict[str, Any]
Listener = Callable[[int], None]

RUN_EVENTS = frozenset({"run.queued", "run.started", "run.finished", "run.status", "run.progress"})
# a status never goes back to an earlier stage, whichever read or event is late
STAGE = {"queued": 0, "running": 1, **dict.fromkeys(FINISHED, 2)}


def run_id_of(event: Event) -> int | None:
    data = event.get("data") or {}
    run_id = data.get("run_id", data.get("id"))
    if run_id is None:
        topic = str(event.get("topic", ""))
        run_id = topic.removeprefix("run:") if topic.startswith("run:") else None
    try:
        return int(run_id) if run_id is not None else None
    except (TypeError, ValueError):
        return None


def event_fields(event: Event) -> dict[str, Any]:
    """The run fields an event tells: the whole run (status, queued, started; finished carries
    it under ``run``) or the figures of a ``run.progress``."""
    data = dict(event.get("data") or {})
    whole = data.pop("run", None)
    fields = {**data, **whole} if isinstance(whole, Mapping) else data
    fields.pop("run_id", None)
    return {k: v for k, v in fields.items() if v is not None or k not in ("progress",)}


def shown_progress(state: Mapping[str, Any]) -> int:
    """The percentage a bar and a table show for a run: 100 once it succeeded, else the last
    progress it reported (0 before any)."""
    if state.get("status") == "succeeded":
        return 100
    try:
        return max(0, min(100, int(float(state.get("progress") or 0))))
    except (TypeError, ValueError):
        return 0


def is_active(state: Mapping[str, Any]) -> bool:
    return state.get("status") not in FINISHED


class RunStates:
    """The latest state of each run. Events are applied as they come; a REST read is merged
    field by field, only where no event told that field after the read began (``reading()``
    before, ``merge(rows, mark)`` after). A read never moves a status back to an earlier
    stage, nor a progress back."""

    def __init__(self) -> None:
        self._runs: dict[int, RunState] = {}
        self._told: dict[int, dict[str, int]] = {}  # run → field → clock of the event
        self._clock = 0
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []

    _shared: weakref.WeakKeyDictionary[EventStream, RunStates] = weakref.WeakKeyDictionary()
    _shared_lock = threading.Lock()

    @classmethod
    def of(cls, stream: EventStream) -> RunStates:
        """The store of ``stream`` (one per stream, fed by it, shared by its panels)."""
        with cls._shared_lock:
            states = cls._shared.get(stream)
            if states is None:
                states = cls._shared[stream] = cls()
                stream.add_listener(states.take)
            return states

    def add_listener(self, listener: Listener) -> None:
        """``listener(run_id)`` after each change of that run (on the caller's thread)."""
        self._listeners.append(listener)

    def get(self, run_id: int | None) -> RunState:
        with self._lock:
            return dict(self._runs.get(run_id, {})) if run_id is not None else {}

    def known(self) -> list[int]:
        with self._lock:
            return sorted(self._runs)

    def apply(self, event: Event) -> int | None:
        """Take a run event in; returns the run it changed (None for other events)."""
        if event.get("type") not in RUN_EVENTS:
            return None
        run_id = run_id_of(event)
        if run_id is None:
            return None
        fields = event_fields(event)
        with self._lock:
            self._clock += 1
            state = self._runs.setdefault(run_id, {"id": run_id})
            if _stage(fields) < _stage(state):
                fields.pop("status", None)
            state.update(fields)
            told = self._told.setdefault(run_id, {})
            for key in fields:
                told[key] = self._clock
        self._notify(run_id)
        return run_id

    def take(self, event: dict[str, Any]) -> None:
        """``apply`` as an event stream listener."""
        self.apply(event)

    def reading(self) -> int:
        """Call before a REST read; pass the result to ``merge``."""
        with self._lock:
            self._clock += 1
            return self._clock

    def merge(self, rows: Iterable[Mapping[str, Any]], mark: int) -> list[int]:
        """Merge runs read from the API (begun at ``mark``); returns the runs that changed."""
        changed = []
        with self._lock:
            for row in rows:
                run_id = int(row["id"])
                state = self._runs.setdefault(run_id, {"id": run_id})
                told = self._told.get(run_id, {})
                fresh = {k: v for k, v in row.items() if told.get(k, 0) < mark}
                if _stage(fresh) < _stage(state):
                    fresh.pop("status", None)
                if _behind(fresh.get("progress"), state.get("progress")):
                    # run.progress goes out before its line's batch is stored: a read just
                    # after it may not have it yet
                    fresh.pop("progress")
                if any(state.get(k) != v for k, v in fresh.items()):
                    state.update(fresh)
                    changed.append(run_id)
        for run_id in changed:
            self._notify(run_id)
        return changed

    def _notify(self, run_id: int) -> None:
        for listener in list(self._listeners):
            listener(run_id)


def _behind(read: Any, known: Any) -> bool:
    try:
        return read is not None and known is not None and float(read) < float(known)
    except (TypeError, ValueError):
        return False


def _stage(fields: Mapping[str, Any]) -> int:
    return STAGE.get(str(fields.get("status")), -1)
