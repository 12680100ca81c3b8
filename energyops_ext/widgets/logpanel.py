"""A run's log, whole from its first line whenever it is opened, then live.

Opening a run reads its lines from the API (``GET /runs/{id}/logs``), then subscribes to
``run:<id>`` with ``since`` the last seq read, so lines printed in between come by the replay.
The event stream is shared by the panels of a kernel and drops lines it has already handed to
any of them; lines reach the view only through a :class:`ContiguousLines`, which puts the read,
the replay and the live lines back in seq order, each once, and says if a seq is missing (then
the missing ones are read again from the API)."""

from __future__ import annotations

import base64
import threading
from collections.abc import Mapping
from typing import Any

import ipywidgets as widgets

from .buffer import LEVELS, LogBuffer, LogLine, Throttle, esc
from .client import EnergyOpsAPIError, EnergyOpsClient
from .events import ContiguousLines, EventStream
from .logview import LogView, is_marker

Event = dict[str, Any]
PAGE = 10_000  # the API's largest page of log lines


def download_link(filename: str, content: bytes, mime: str, label: str) -> str:
    """An anchor that downloads ``content`` from the page itself (no token in any URL)."""
    data = base64.b64encode(content).decode("ascii")
    return (
        f'<a class="eo-download" download="{esc(filename)}" '
        f'href="data:{esc(mime)};base64,{data}">{esc(label)}</a>'
    )


class LogPanel:
    """A run's log: level and text filters, ``::energyops`` report lines hidden unless asked
    for (then dimmed), follow/pause (in the view), download, clear."""

    def __init__(
        self,
        client: EnergyOpsClient,
        stream: EventStream,
        *,
        capacity: int = 10_000,
        view_lines: int = 1000,
        per_second: float = 5.0,
    ) -> None:
        self.client, self.stream = client, stream
        self.buffer = LogBuffer(capacity)
        self.feed = ContiguousLines()
        self.view_lines = view_lines
        self.run_id: int | None = None
        self.repairs = 0  # API reads that filled a gap (none when the stream kept up)
        self._last_gap: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self.view = LogView()
        self.levels = widgets.SelectMultiple(
            options=LEVELS, value=LEVELS, rows=4, description="Levels", layout={"width": "200px"}
        )
        self.search = widgets.Text(placeholder="filter text", layout={"width": "220px"})
        self.markers = widgets.Checkbox(
            value=False, description="show ::energyops lines", indent=False
        )
        self.markers.add_class("eo-log-markers")
        self.status = widgets.Label("no run selected")
        self.download = widgets.Button(description="Download", icon="download")
        self.clear_button = widgets.Button(description="Clear", icon="eraser")
        self.link = widgets.HTML()
        self.download.on_click(lambda _b: self._download())
        self.clear_button.on_click(lambda _b: self.clear())
        self.throttle = Throttle(self._render, per_second)
        for control in (self.levels, self.search, self.markers):
            control.observe(lambda _c: self.throttle.poke(), "value")
        bar = widgets.HBox(
            [self.levels, self.search, self.markers, self.download, self.clear_button, self.link]
        )
        self.widget = widgets.VBox([bar, self.status, self.view])
        self.widget.add_class("eo-log-panel")
        stream.add_listener(self._on_event)

    # --- opening a run ---

    def follow(self, run_id: int | None) -> None:
        """Show ``run_id``'s log from its first line (the last ``capacity`` of a longer log),
        then live."""
        previous = self.run_id
        start = self._window_start(run_id) if run_id is not None else 0
        with self._lock:
            self.run_id = run_id
            self.buffer = LogBuffer(self.buffer.capacity)
            self.feed = ContiguousLines(start)
            self._last_gap = None
        if previous is not None:
            self.stream.unsubscribe([f"run:{previous}"])
        if run_id is not None:
            read = self._read(run_id, start)
            topic = f"run:{run_id}"
            # every line after ``read`` exists only on the server's side of this call: the
            # replay from ``since`` brings it, and a line the stream passed on meanwhile has
            # already reached ``_on_event`` (the feed puts both in order, each once)
            self.stream.subscribe([topic], since={topic: read})
        self.throttle.poke()

    def _window_start(self, run_id: int) -> int:
        """Where the lines kept start: 0, or the last ``capacity`` lines of a longer log."""
        try:
            count = int(self.client.run(run_id).get("line_count") or 0)
        except EnergyOpsAPIError:
            return 0
        return max(0, count - self.buffer.capacity)

    def _read(self, run_id: int, after: int, until: int | None = None) -> int:
        """Read lines after ``after`` (up to ``until``) from the API into the feed; returns the
        last seq read (``after`` if none)."""
        while until is None or after < until:
            limit = PAGE if until is None else min(PAGE, until - after)
            try:
                page = self.client.get(f"runs/{run_id}/logs", after=after, limit=limit)
            except EnergyOpsAPIError as exc:
                self.status.value = f"run {run_id}: log not readable ({exc})"
                return after
            lines = list(page.get("items", [])) if isinstance(page, Mapping) else []
            self._take(run_id, lines)
            if lines:
                after = max(after, max(int(line["seq"]) for line in lines))
            if len(lines) < limit:
                break
        return after

    # --- lines coming in ---

    def _on_event(self, event: Event) -> None:
        if event.get("type") != "run.log" or event.get("topic") != f"run:{self.run_id}":
            return
        self._take(self.run_id, (event.get("data") or {}).get("lines", []))

    def _take(self, run_id: int | None, lines: list[Mapping[str, Any]]) -> None:
        with self._lock:
            if run_id != self.run_id or run_id is None:
                return  # a read or an event of the run shown before
            ready = self.feed.add(lines)
            if ready:
                self.buffer.extend(ready)
        if ready:
            self.throttle.poke()

    def _repair(self) -> None:
        """A gap that outlived one render is read again from the API."""
        with self._lock:
            gap, run_id = self.feed.gap(), self.run_id
            stale = gap is not None and gap == self._last_gap
            self._last_gap = gap
        if not stale or gap is None or run_id is None:
            return
        self.repairs += 1
        self._read(run_id, gap[0] - 1, gap[1])
        with self._lock:
            if self.run_id == run_id and self.feed.gap() == gap:
                # the API has none of them either (deleted, or never written): go on
                self.buffer.extend(self.feed.skip(gap[1]))

    def clear(self) -> None:
        with self._lock:
            self.buffer.clear()
        self.throttle.poke()

    # --- the view ---

    def lines(self) -> list[LogLine]:
        """Every line kept, in order (what the view shows before filters)."""
        with self._lock:
            return self.buffer.lines()

    def _render(self) -> None:
        self._repair()
        show_markers = bool(self.markers.value)
        with self._lock:
            # hidden report lines must not take places of the ``view_lines`` shown
            limit = self.view_lines if show_markers else self.buffer.capacity
            shown = self.buffer.view(self.levels.value, self.search.value, limit)
            total, run_id, waiting = len(self.buffer), self.run_id, self.feed.waiting
        hidden = 0
        if not show_markers:
            kept = [line for line in shown if not is_marker(line.text)]
            hidden, shown = len(shown) - len(kept), kept[-self.view_lines :]
        with self.view.hold_sync():
            self.view.show(shown)
        if waiting:
            self.throttle.poke()  # come back for the gap
        if run_id is None:
            self.status.value = "no run selected"
            return
        self.status.value = f"run {run_id}: {total} lines kept, {len(shown)} shown" + (
            f", {hidden} ::energyops lines hidden" if hidden else ""
        )

    def _download(self) -> None:
        with self._lock:
            text = self.buffer.to_text()
        name = f"run-{self.run_id or 0}.log"
        self.link.value = download_link(name, text.encode("utf-8"), "text/plain", f"save {name}")
