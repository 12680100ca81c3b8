"""Model panels: a run form built from a script's declared parameters, the solver's incumbent
and bound charted live, and two runs compared side by side with the per-block difference.

They talk to the server only through the client (``/scripts/{id}``, ``/scripts/{id}/runs``,
``/runs/{id}/stop``, ``/runs/compare``) and the event stream (``run.progress``)."""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import bqplot as bq
import ipywidgets as widgets
import numpy as np

from .buffer import Throttle, esc, format_number, html_table
from .client import EnergyOpsAPIError, EnergyOpsClient
from .events import EventStream
from .format import format_instant

Event = Mapping[str, Any]
SOLVER_KEYS = ("incumbent", "bound", "gap", "elapsed_s")


# --- pure parts ---


def form_fields(parameters: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What each input of the run form is: kind (date / int / float / text / bool / choice),
    initial value, limits, options, and the label with the help text."""
    fields = []
    for p in parameters:
        kind = {"str": "text"}.get(str(p["type"]), str(p["type"]))
        default = p.get("default")
        if kind == "date":
            value: Any = "" if default in (None, "latest") else str(default)
        elif kind == "text":
            value = "" if default is None else str(default)
        else:
            value = default
        label = str(p["name"]) + (" *" if p.get("required") else "")
        fields.append(
            {
                "name": p["name"],
                "kind": kind,
                "value": value,
                "min": p.get("min"),
                "max": p.get("max"),
                "options": list(p.get("choices") or []),
                "label": label,
                "help": p.get("help")
                or ("blank: the latest day with prices" if default == "latest" else ""),
            }
        )
    return fields


def form_values(fields: Sequence[Mapping[str, Any]], raw: Mapping[str, Any]) -> dict[str, Any]:
    """The ``parameters`` of a run request from what the form holds: a blank date or text
    leaves the parameter to its default (the server checks the rest)."""
    values: dict[str, Any] = {}
    for field in fields:
        value = raw.get(field["name"])
        if field["kind"] in ("date", "text") and value in (None, ""):
            continue
        if isinstance(value, date):
            value = value.isoformat()
        if field["kind"] in ("int", "float") and value is None:
            continue
        values[field["name"]] = value
    return values


def solver_points(events: Sequence[Event]) -> dict[str, list[float]]:
    """Elapsed seconds, incumbent and bound from run.progress events, in order (a figure a
    report lacked is NaN)."""
    points: dict[str, list[float]] = {"elapsed_s": [], "incumbent": [], "bound": [], "gap": []}
    for event in events:
        data = event.get("data") or {}
        if event.get("type") != "run.progress" or data.get("elapsed_s") is None:
            continue
        for key in points:
            value = data.get(key)
            points[key].append(float(value) if isinstance(value, int | float) else math.nan)
    return points


def compare_rows(diff: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(what, run A, run B) rows of a comparison, differences first among the settings."""
    a_script, b_script = diff["script"]["a"], diff["script"]["b"]
    rows = [
        ("run", str(diff["ids"][0]), str(diff["ids"][1])),
        (
            "script",
            f"{a_script['name']} v{a_script['version']}",
            f"{b_script['name']} v{b_script['version']}",
        ),
        ("status", str(diff["status"]["a"]), str(diff["status"]["b"])),
    ]
    for section in ("parameters", "config"):
        part = diff[section]
        for name, change in part["changed"].items():
            rows.append((f"{section}.{name}", str(change["a"]), str(change["b"])))
        for name, value in part["removed"].items():
            rows.append((f"{section}.{name}", str(value), "—"))
        for name, value in part["added"].items():
            rows.append((f"{section}.{name}", "—", str(value)))
    if not diff["args"]["equal"]:
        rows.append(("args", " ".join(diff["args"]["a"]), " ".join(diff["args"]["b"])))
    inputs = diff["inputs"]
    rows.append(
        ("inputs", "same" if inputs["equal"] else "differ: " + ", ".join(inputs["differing"]), "")
    )
    for key, label, decimals in (
        ("objective_value", "objective", 2),
        ("runtime_ms", "runtime ms", 0),
        ("solver_time_ms", "solver ms", 0),
    ):
        rows.append(
            (
                label,
                format_number(diff[key]["a"], "", decimals),
                format_number(diff[key]["b"], "", decimals),
            )
        )
    for key, figure in diff["counts"].items():
        rows.append((key.replace("_", " "), format_number(figure["a"]), format_number(figure["b"])))
    return rows


# --- widgets ---


class SolverChart:
    """Incumbent and best bound of one run over its elapsed time, live from run.progress."""

    def __init__(self, stream: EventStream) -> None:
        self.stream = stream
        self.run_id: int | None = None
        self.events: list[Event] = []
        self._lock = threading.Lock()
        x, y = bq.LinearScale(), bq.LinearScale()
        self.lines = bq.Lines(
            x=np.zeros(0),
            y=np.zeros((2, 0)),
            scales={"x": x, "y": y},
            colors=["#2563eb", "#16a34a"],
            labels=["incumbent", "bound"],
            display_legend=True,
            marker="circle",
            marker_size=16,
        )
        self.gap = widgets.HTML()
        self.figure = bq.Figure(
            marks=[self.lines],
            axes=[
                bq.Axis(scale=x, label="elapsed s"),
                bq.Axis(scale=y, orientation="vertical", label="objective"),
            ],
            title="Solver progress",
            legend_location="bottom-right",
            layout=widgets.Layout(width="100%", height="320px"),
        )
        self.figure.add_class("eo-solver-chart")
        self.widget = widgets.VBox([self.figure, self.gap])
        self.throttle = Throttle(self._render, 4.0)
        stream.add_listener(self._on_event)

    def follow(self, run_id: int | None) -> None:
        with self._lock:
            self.run_id, self.events = run_id, []
        if run_id is not None:
            self.stream.subscribe([f"run:{run_id}"])
        self.throttle.poke()

    def _on_event(self, event: Event) -> None:
        if event.get("topic") != f"run:{self.run_id}" or event.get("type") != "run.progress":
            return
        with self._lock:
            self.events.append(event)
        self.throttle.poke()

    def _render(self) -> None:
        with self._lock:
            points = solver_points(self.events)
        with self.lines.hold_sync():
            self.lines.x = np.array(points["elapsed_s"])
            self.lines.y = np.array([points["incumbent"], points["bound"]])
        gaps = [g for g in points["gap"] if not math.isnan(g)]
        self.gap.value = f"gap {esc(format_number(gaps[-1] * 100, '%', 2))}" if gaps else ""


class RunForm:
    """A form with one input per declared parameter, Run and Stop buttons, the server's answer
    (a 422 names the parameter and the rule), and the run's solver chart."""

    def __init__(self, client: EnergyOpsClient, stream: EventStream, script_id: int) -> None:
        self.client, self.script_id = client, script_id
        script = client.script(script_id)
        self.fields = form_fields(script.get("parameters") or [])
        self.inputs = {f["name"]: _input(f) for f in self.fields}
        self.run_button = widgets.Button(description="Run", button_style="primary")
        self.stop_button = widgets.Button(description="Stop, keep best", disabled=True)
        self.message = widgets.HTML()
        self.chart = SolverChart(stream)
        self.run_id: int | None = None
        self.run_button.on_click(lambda _b: self.submit())
        self.stop_button.on_click(lambda _b: self.stop())
        title = widgets.HTML(f"<b>{esc(script['name'])} v{esc(script['version'])}</b>")
        self.widget = widgets.VBox(
            [
                title,
                *self.inputs.values(),
                widgets.HBox([self.run_button, self.stop_button]),
                self.message,
                self.chart.widget,
            ]
        )
        self.widget.add_class("eo-run-form")

    def values(self) -> dict[str, Any]:
        return form_values(self.fields, {name: w.value for name, w in self.inputs.items()})

    def submit(self) -> dict[str, Any] | None:
        try:
            run = self.client.start_run(self.script_id, parameters=self.values())
        except EnergyOpsAPIError as exc:
            self.message.value = (
                f'<span class="eo-error" style="color:#dc2626">{esc(exc.message)}</span>'
            )
            return None
        self.run_id = int(run["id"])
        self.message.value = f'run <b class="eo-run-id">{self.run_id}</b> {esc(run["status"])}'
        self.stop_button.disabled = False
        self.chart.follow(self.run_id)
        return run

    def stop(self) -> None:
        if self.run_id is None:
            return
        try:
            run = self.client.stop_run(self.run_id)
        except EnergyOpsAPIError as exc:
            self.message.value = f'<span class="eo-error">{esc(exc.message)}</span>'
            return
        requested = format_instant(run.get("stop_requested_at"))
        self.message.value = f"run {self.run_id}: stop requested at {esc(requested)}"
        self.stop_button.disabled = True


def _input(field: Mapping[str, Any]) -> widgets.Widget:
    """The input of one field; numbers are not clamped here: the server's 422 says the rule."""
    label, kind, value = field["label"], field["kind"], field["value"]
    common: dict[str, Any] = {"description": label, "style": {"description_width": "initial"}}
    if field["help"]:
        common["tooltip"] = field["help"]
    if kind == "bool":
        return widgets.Checkbox(value=bool(value), **common)
    if kind == "choice":
        return widgets.Dropdown(options=field["options"], value=value, **common)
    if kind == "int":
        return widgets.IntText(value=value if value is not None else 0, **common)
    if kind == "float":
        return widgets.FloatText(value=value if value is not None else 0.0, **common)
    placeholder = "YYYY-MM-DD (blank: latest)" if kind == "date" else ""
    return widgets.Text(value=value, placeholder=placeholder, **common)


class ComparePanel:
    """Two runs side by side: settings that differ, figures, and the per-block difference of
    their model results as bars."""

    def __init__(self, client: EnergyOpsClient) -> None:
        self.client = client
        self.table = widgets.HTML()
        x, y = bq.OrdinalScale(), bq.LinearScale()
        self.bars = bq.Bars(
            x=np.zeros(0), y=np.zeros(0), scales={"x": x, "y": y}, colors=["#f59e0b"]
        )
        self.figure = bq.Figure(
            marks=[self.bars],
            axes=[
                bq.Axis(scale=x, label="block", num_ticks=12),
                bq.Axis(scale=y, orientation="vertical", label="B - A, MW"),
            ],
            title="Model result MW, B - A per block",
            layout=widgets.Layout(width="100%", height="300px"),
        )
        self.figure.add_class("eo-compare-chart")
        self.widget = widgets.VBox([self.table, self.figure])
        self.widget.add_class("eo-compare")
        self.diff: dict[str, Any] | None = None

    def show(self, a: int, b: int) -> dict[str, Any] | None:
        try:
            diff = self.client.compare_runs(a, b)
        except EnergyOpsAPIError as exc:
            self.table.value = f'<span class="eo-error">{esc(exc.message)}</span>'
            return None
        self.diff = diff
        rows = [{"what": w, "a": a, "b": b} for w, a, b in compare_rows(diff)]
        self.table.value = html_table(rows, [("what", ""), ("a", "run A"), ("b", "run B")])
        blocks = (diff.get("block_results") or {}).get("blocks") or []
        with self.bars.hold_sync():
            self.bars.x = np.array([r["block"] for r in blocks])
            self.bars.y = np.array([r["diff"] if r["diff"] is not None else 0.0 for r in blocks])
        return diff
