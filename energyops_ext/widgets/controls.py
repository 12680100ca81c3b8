"""Controls shared by the action panels: the create / pause / delete buttons of the rule and
schedule panels; a list of runs (one row each: status, progress, objective, Watch and Kill);
the newest run of each script; the confirmation before a script is deleted (with how many runs
go with it).

Rows follow the stream's :class:`RunStates` live; an active run's topic is subscribed while it
is listed (for its ``run.progress``) and let go once it finished."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import ipywidgets as widgets

from .buffer import Throttle, esc, format_number
from .client import EnergyOpsAPIError, EnergyOpsClient
from .events import EventStream
from .runstate import RunStates, is_active, shown_progress


def error_html(exc: Exception) -> str:
    return f'<div class="eo-error" style="color:#b91c1c">{esc(exc)}</div>'


def run_row_html(state: dict[str, Any]) -> str:
    status = str(state.get("status") or "—")
    name = state.get("script_name") or ""
    version = state.get("script_version")
    return (
        f'<span class="eo-run-row" data-run="{esc(state.get("id"))}" data-status="{esc(status)}">'
        f"<b>#{esc(state.get('id'))}</b> {esc(name)}"
        + (f" v{esc(version)}" if version is not None else "")
        + f" · <span class='eo-run-status'>{esc(status)}</span>"
        f" · <span class='eo-run-progress-pct'>{shown_progress(state)}%</span>"
        f" · objective <span class='eo-run-objective'>"
        f"{esc(format_number(state.get('objective_value'), '', 2))}</span></span>"
    )


class RunRow:
    def __init__(
        self, run_id: int, on_watch: Callable[[int], None], on_kill: Callable[[int], None]
    ):
        self.run_id = run_id
        self.label = widgets.HTML(layout={"width": "520px"})
        self.watch = widgets.Button(description="Watch", icon="eye", layout={"width": "90px"})
        self.kill = widgets.Button(
            description="Kill", icon="stop", button_style="danger", layout={"width": "80px"}
        )
        self.kill.add_class("eo-kill-button")
        self.watch.on_click(lambda _b: on_watch(run_id))
        self.kill.on_click(lambda _b: on_kill(run_id))
        self.widget = widgets.HBox([self.label, self.watch, self.kill])
        self.widget.add_class("eo-run-item")

    def show(self, state: dict[str, Any]) -> None:
        self.label.value = run_row_html(state)
        self.kill.disabled = not is_active(state)


class RunList:
    """Runs shown newest first; ``on_watch(run_id)`` when a row's Watch is pressed."""

    def __init__(
        self,
        client: EnergyOpsClient,
        stream: EventStream,
        on_watch: Callable[[int], None],
        states: RunStates | None = None,
    ) -> None:
        self.client, self.stream = client, stream
        self.states = states or RunStates.of(stream)
        self.on_watch = on_watch
        self.rows: dict[int, RunRow] = {}
        self.message = widgets.HTML()
        self.box = widgets.VBox()
        self.empty = widgets.HTML('<div class="eo-empty">no runs yet</div>')
        self.widget = widgets.VBox([self.empty, self.box, self.message])
        self.widget.add_class("eo-run-list")
        self._followed: set[int] = set()  # active runs whose topic this list subscribed
        self._lock = threading.Lock()
        self._recheck: set[int] = set()
        self.throttle = Throttle(self._render, 5.0)
        self.states.add_listener(self._changed)
        stream.add_listener(self._on_subscribed)

    def _on_subscribed(self, event: dict[str, Any]) -> None:
        """Once the server has a run's topic attached, read the run again: a progress it
        reported before that went to nobody."""
        if event.get("type") != "subscribed":
            return
        topics = (event.get("data") or {}).get("topics") or []
        ids = {int(t[4:]) for t in topics if str(t).startswith("run:") and t[4:].isdigit()}
        if ids & self._followed:
            with self._lock:
                self._recheck |= ids & self._followed
            self.throttle.poke()

    def _read_again(self) -> None:
        with self._lock:
            ids, self._recheck = sorted(self._recheck), set()
        for run_id in ids:
            mark = self.states.reading()
            try:
                self.states.merge([self.client.run(run_id)], mark)
            except EnergyOpsAPIError:
                continue

    def show(self, run_ids: Iterable[int]) -> None:
        """List exactly these runs (newest first)."""
        ids = sorted(set(run_ids), reverse=True)
        with self._lock:
            self.rows = {i: self.rows.get(i) or RunRow(i, self.on_watch, self.kill) for i in ids}
        self.throttle.poke()

    def add(self, run_id: int) -> None:
        self.show([*self.rows, run_id])

    def kill(self, run_id: int) -> None:
        try:
            self.client.kill_run(run_id)
        except EnergyOpsAPIError as exc:
            self.message.value = error_html(exc)
            return
        self.message.value = f"kill sent to run {run_id}"

    def _changed(self, run_id: int) -> None:
        if run_id in self.rows:
            self.throttle.poke()

    def _render(self) -> None:
        self._read_again()
        with self._lock:
            rows = list(self.rows.values())
        states = {row.run_id: self.states.get(row.run_id) for row in rows}
        self._follow_active({i for i, s in states.items() if s and is_active(s)})
        for row in rows:
            row.show(states[row.run_id] or {"id": row.run_id})
        children = tuple(row.widget for row in rows)
        if self.box.children != children:
            self.box.children = children
        self.empty.layout.display = "none" if rows else ""

    def _follow_active(self, active: set[int]) -> None:
        start, stop = active - self._followed, self._followed - active
        self._followed = active
        if start:
            self.stream.subscribe([f"run:{i}" for i in sorted(start)])
        if stop:
            self.stream.unsubscribe([f"run:{i}" for i in sorted(stop)])


def last_runs(states: RunStates, script_ids: list[int]) -> dict[int, str]:
    """The status of each script's newest run known (from the API and the run events)."""
    wanted = set(script_ids)
    newest: dict[int, tuple[int, str]] = {}
    for run_id in states.known():
        state = states.get(run_id)
        script_id = state.get("script_id")
        if script_id in wanted and run_id > newest.get(script_id, (0, ""))[0]:
            newest[script_id] = (run_id, str(state.get("status") or ""))
    return {script_id: status for script_id, (_run, status) in newest.items()}


class DeleteConfirmation:
    """Delete… asks first, saying what goes with the script: how many runs (and their logs
    and files), and how many of them are still active (killed first). The counts are read
    again on confirm; if they changed, it asks again."""

    def __init__(self, client: EnergyOpsClient, on_deleted: Callable[[int, str], None]) -> None:
        self.client = client
        self.on_deleted = on_deleted
        self.script_id: int | None = None
        self.counts: tuple[int, int] | None = None
        self.prompt = widgets.HTML()
        self.confirm = widgets.Button(description="Confirm delete", button_style="danger")
        self.confirm.add_class("eo-confirm-delete")
        self.cancel_button = widgets.Button(description="Cancel")
        self.confirm.on_click(lambda _b: self.delete())
        self.cancel_button.on_click(lambda _b: self.cancel())
        self.widget = widgets.VBox([self.prompt, widgets.HBox([self.confirm, self.cancel_button])])
        self.widget.add_class("eo-delete-confirm")
        self.widget.layout.display = "none"

    def ask(self, script_id: int | None) -> None:
        if script_id is None:
            return
        try:
            script = self.client.script(script_id)
            counts = self._counts(script_id)
        except EnergyOpsAPIError as exc:
            self.prompt.value = error_html(exc)
            self.widget.layout.display = ""
            return
        self.script_id, self.counts = script_id, counts
        self.prompt.value = delete_prompt_html(script, *counts)
        self.confirm.description = delete_button_text(counts[0])
        self.widget.layout.display = ""

    def cancel(self) -> None:
        self.script_id = self.counts = None
        self.widget.layout.display = "none"

    def delete(self) -> None:
        sid, asked = self.script_id, self.counts
        if sid is None:
            return
        try:
            counts = self._counts(sid)
            if counts != asked:  # a run started or ended since the question
                self.ask(sid)
                return
            self.client.delete_script(sid, force=counts[1] > 0)
        except EnergyOpsAPIError as exc:
            self.prompt.value = error_html(exc)
            return
        self.cancel()
        runs = f" with its {counts[0]} run{'' if counts[0] == 1 else 's'}" if counts[0] else ""
        self.on_deleted(sid, f"script {sid} deleted{runs}")

    def _counts(self, script_id: int) -> tuple[int, int]:
        """(runs, active runs) of a script."""

        def total(**filters: Any) -> int:
            answer = self.client.get("runs", script_id=script_id, limit=1, **filters)
            return int(answer.get("total", 0)) if isinstance(answer, dict) else 0

        return total(), total(status="queued") + total(status="running")


def delete_prompt_html(script: Mapping[str, Any], runs: int, active: int) -> str:
    name = f"{script.get('name', '?')} v{script.get('version', '?')}"
    if runs == 0:
        goes = "It has no runs."
    else:
        plural = "run" if runs == 1 else "runs"
        goes = (
            f"Its <b class='eo-delete-runs'>{runs}</b> {plural}, with their logs and output "
            "files, are deleted with it."
        )
    if active:
        goes += (
            f" {active} of them {'is' if active == 1 else 'are'} still active and will be killed."
        )
    return (
        f'<div class="eo-delete-prompt" data-runs="{runs}" data-active="{active}">'
        f"Delete <b>{esc(name)}</b>? {goes} This cannot be undone.</div>"
    )


def delete_button_text(runs: int) -> str:
    if runs == 0:
        return "Delete script"
    return f"Delete script and {runs} run{'' if runs == 1 else 's'}"


Action = Callable[[], object]


class ManageButtons:
    """Create, pause/resume and a two-step delete: "Delete…" shows the confirming button,
    which alone deletes; ``hide_confirm`` puts it away again after an action."""

    def __init__(self, create: Action, toggle: Action, delete: Action) -> None:
        self.create = widgets.Button(description="Create", icon="plus")
        self.pause = widgets.Button(description="Pause / resume", icon="pause")
        self.delete = widgets.Button(description="Delete…", icon="trash")
        self.confirm = widgets.Button(description="Confirm delete", button_style="danger")
        self.hide_confirm()
        self.create.on_click(lambda _b: create())
        self.pause.on_click(lambda _b: toggle())
        self.delete.on_click(lambda _b: setattr(self.confirm.layout, "display", ""))
        self.confirm.on_click(lambda _b: delete())

    def hide_confirm(self) -> None:
        self.confirm.layout.display = "none"

    def row(self, selector: widgets.Widget) -> widgets.HBox:
        """The selector with the buttons that act on what it selects."""
        return widgets.HBox([selector, self.pause, self.delete, self.confirm])
