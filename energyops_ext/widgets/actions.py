"""Panels that change things (quants only; the operator dashboards never show these):
dataset upload with a dry-run preview, and scripts/models with runs, kill, archive, delete."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any

import ipywidgets as widgets

from .buffer import Throttle, esc, format_number, html_table
from .client import EnergyOpsAPIError, EnergyOpsClient
from .controls import DeleteConfirmation, RunList, error_html, last_runs
from .events import EventStream
from .logpanel import LogPanel
from .panels import RunProgress, _records
from .runstate import RunStates, is_active

DEFAULT_KINDS = (
    "market-snapshot",
    "exchange-prices",
    "generator-schedule",
    "contract-schedule",
    "market-bids",
)


REPORT_COUNTS = (
    ("rows_read", "read"),
    ("rows_inserted", "inserted"),
    ("rows_updated", "updated"),
    ("rows_deleted", "deleted"),
    ("rows_rejected", "rejected"),
    ("warnings_total", "warnings"),
)
ROW_COLUMNS = [
    ("row", "row"),
    ("column", "column"),
    ("value", "value"),
    ("rule", "rule"),
    ("message", "message"),
]


def _conversion_text(item: Any) -> str:
    """``{"column": "dam_price", "from": "Rs/kWh", "to": "Rs/MWh", "factor": 1000, ...}`` →
    ``dam_price: Rs/kWh → Rs/MWh, multiplied by 1000 (every value is below 50)``."""
    if not isinstance(item, Mapping):
        return str(item)
    text = f"{item.get('column', '?')}: {item.get('from', '?')} → {item.get('to', '?')}"
    if item.get("factor") is not None:
        text += f", multiplied by {item['factor']:g}"
    return text + (f" ({item['reason']})" if item.get("reason") else "")


def _report_rows_html(title: str, rows: Any, total: Any) -> str:
    shown = [r for r in rows or [] if isinstance(r, Mapping)]
    more = (
        f" (the first {len(shown)} of {format_number(total)})"
        if isinstance(total, int) and total > len(shown)
        else ""
    )
    return f"<b>{esc(title)}{esc(more)}</b>" + html_table(shown, ROW_COLUMNS, empty="none")


def report_html(report: Mapping[str, Any]) -> str:
    """An upload report as readable rows: counts, the sheet, unit conversions and notes as
    sentences, the column mapping, a preview of the rows (dry run), the rejected rows (not
    stored) and the warnings (rows stored anyway), each with its row, column, rule and message."""
    counts = " · ".join(
        f"{label} <b>{esc(format_number(report.get(key)))}</b>"
        for key, label in REPORT_COUNTS
        if key in report
    )
    status = report.get("status", "")
    if report.get("dry_run"):
        stored = "dry run, nothing stored"
    else:
        stored = "nothing stored" if status == "rejected" else "stored"
    lines = [_conversion_text(c) for c in report.get("conversions") or []]
    lines += [str(n) for n in report.get("notes") or []]
    check = report.get("kind_check") or {}
    looks_like = check.get("looks_like") if isinstance(check, Mapping) else None
    if looks_like and looks_like != report.get("kind"):
        lines.insert(0, f"the file looks more like {looks_like} than {report.get('kind')}")
    sheet = report.get("sheet")
    if sheet:
        choice = report.get("sheet_choice")
        lines.insert(0, f"sheet: {sheet}" + (f" ({choice})" if choice else ""))
    mapping = report.get("columns") or {}
    mapping_rows = (
        [{"from": k, "to": v} for k, v in mapping.items()] if isinstance(mapping, Mapping) else []
    )
    preview = report.get("preview") or []
    preview_columns = [(str(k), str(k)) for k in (preview[0] if preview else {})]
    return (
        f'<div class="eo-report"><div>{esc(status)} ({esc(stored)}): {counts}</div>'
        + "".join(f"<div>{esc(line)}</div>" for line in lines)
        + (
            html_table(mapping_rows, [("from", "column"), ("to", "file column")])
            if mapping_rows
            else ""
        )
        + ("<b>Preview</b>" + html_table(preview, preview_columns) if preview else "")
        + _report_rows_html(
            "Rejected rows (not stored)", report.get("errors"), report.get("errors_total")
        )
        + _report_rows_html(
            "Warnings (rows stored)", report.get("warnings"), report.get("warnings_total")
        )
        + "</div>"
    )


def _uploaded(upload: widgets.FileUpload) -> tuple[str, bytes] | None:
    if not upload.value:
        return None
    item = upload.value[0]
    return str(item["name"]), bytes(item["content"])


class UploadPanel:
    """Drag a file in, pick its kind (and sheet), preview (dry run), then commit."""

    def __init__(self, client: EnergyOpsClient) -> None:
        self.client = client
        self.file = widgets.FileUpload(
            accept=".xlsx,.xls,.csv", multiple=False, description="Data file"
        )
        self.kind = widgets.Dropdown(options=self._kinds(), description="Kind")
        self.sheet = widgets.Text(placeholder="first matching sheet", description="Sheet")
        self.mode = widgets.Dropdown(options=["upsert", "replace"], description="Mode")
        self.preview_button = widgets.Button(description="Preview", icon="eye")
        self.commit_button = widgets.Button(
            description="Commit", icon="upload", button_style="primary", disabled=True
        )
        self.report = widgets.HTML()
        self.last_report: dict[str, Any] | None = None
        self.preview_button.on_click(lambda _b: self.send(dry_run=True))
        self.commit_button.on_click(lambda _b: self.send(dry_run=False))
        self.file.observe(lambda _c: setattr(self.commit_button, "disabled", True), "value")
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.file, self.kind, self.sheet, self.mode]),
                widgets.HBox([self.preview_button, self.commit_button]),
                self.report,
            ]
        )
        self.widget.add_class("eo-upload-panel")

    def _kinds(self) -> list[str]:
        try:
            answer = self.client.datasets()
        except EnergyOpsAPIError:
            return list(DEFAULT_KINDS)
        items = answer.get("kinds", answer.get("items", [])) if isinstance(answer, dict) else answer
        kinds = [str(k["kind"] if isinstance(k, dict) else k) for k in items or []]
        return kinds or list(DEFAULT_KINDS)

    def send(self, dry_run: bool) -> dict[str, Any] | None:
        picked = _uploaded(self.file)
        if picked is None:
            self.report.value = error_html(ValueError("choose a file first"))
            return None
        name, content = picked
        try:
            report = self.client.upload_dataset(
                self.kind.value,
                content,
                filename=name,
                sheet=self.sheet.value or None,
                mode=self.mode.value,
                dry_run=dry_run,
            )
        except EnergyOpsAPIError as exc:
            self.report.value = error_html(exc)
            return None
        self.last_report = report
        self.report.value = report_html({**report, "dry_run": dry_run})
        self.commit_button.disabled = not dry_run
        return report


class ScriptsPanel:
    """Upload scripts and models; list them with status and last run (live); run, archive,
    delete (after a confirmation that says how many runs go with the script); the selected
    script's runs, each with its status, progress, objective and Kill; watch one's progress
    and log."""

    def __init__(self, client: EnergyOpsClient, stream: EventStream) -> None:
        self.client = client
        self.states = RunStates.of(stream)
        self.file = widgets.FileUpload(accept=".py", multiple=False, description="Script")
        self.kind = widgets.Dropdown(options=["model", "test"], description="Kind")
        self.model_type = widgets.Dropdown(options=["DMO", "RMO", "SO"], description="Model")
        self.description = widgets.Text(description="About")
        self.description.add_class("eo-script-about")
        self.upload_button = widgets.Button(description="Upload", icon="upload")
        self.listing = widgets.HTML()
        self.listing.add_class("eo-script-listing")
        self.selector = widgets.Dropdown(description="Script", options=[("—", None)])
        self.selector.add_class("eo-script-select")
        self.versions = widgets.HTML()
        self.args = widgets.Text(description="Args", placeholder="--horizon 96")
        self.config = widgets.Textarea(description="Config", value="{}")
        self.run_button = widgets.Button(description="Run", icon="play", button_style="success")
        self.run_button.add_class("eo-run-button")
        self.kill_button = widgets.Button(description="Kill", icon="stop", button_style="danger")
        self.archive_button = widgets.Button(description="Archive / restore", icon="archive")
        self.delete_button = widgets.Button(description="Delete…", icon="trash")
        self.delete_button.add_class("eo-delete-button")
        self.delete = DeleteConfirmation(client, on_deleted=self._deleted)
        self.message = widgets.HTML()
        self.run_message = widgets.HTML()  # the watched run's status, live
        self.progress = RunProgress(client, stream, self.states)
        self.log = LogPanel(client, stream)
        self.runs = RunList(client, stream, on_watch=self.watch, states=self.states)
        self.run_id: int | None = None
        self.scripts: list[dict[str, Any]] = []
        self.started_here: set[int] = set()
        self.upload_button.on_click(lambda _b: self.upload())
        self.selector.observe(lambda _c: self.show_script(), "value")
        self.run_button.on_click(lambda _b: self.start())
        self.kill_button.on_click(lambda _b: self.kill())
        self.archive_button.on_click(lambda _b: self.toggle_archive())
        self.delete_button.on_click(lambda _b: self.delete.ask(self.selector.value))
        self.widget = widgets.VBox(
            [
                widgets.HBox(
                    [self.file, self.kind, self.model_type, self.description, self.upload_button]
                ),
                self.listing,
                widgets.HBox([self.selector, self.archive_button, self.delete_button]),
                self.delete.widget,
                self.versions,
                widgets.HBox([self.args, self.config, self.run_button, self.kill_button]),
                self.message,
                widgets.HTML("<b>Runs</b>"),
                self.runs.widget,
                self.run_message,
                self.progress.widget,
                self.log.widget,
            ]
        )
        self.widget.add_class("eo-scripts-panel")
        self.listing_throttle = Throttle(self._render_listing, 2.0)
        self.states.add_listener(self._run_changed)
        stream.subscribe(["runs"])
        self.refresh()

    def _act(self, action: Any) -> Any:
        try:
            return action()
        except (EnergyOpsAPIError, ValueError) as exc:
            self.message.value = error_html(exc)
            return None

    # --- scripts ---

    def refresh(self) -> None:
        mark = self.states.reading()
        scripts = _records(self.client.scripts(per_page=100))
        self.states.merge(
            [s["last_run"] for s in scripts if isinstance(s.get("last_run"), dict)], mark
        )
        self.scripts = scripts
        self._render_listing()
        self.selector.options = [("—", None)] + [
            (f"{s['name']} v{s.get('version', '?')} ({s.get('status')})", int(s["id"]))
            for s in scripts
        ]

    def _render_listing(self) -> None:
        last = last_runs(self.states, [int(s["id"]) for s in self.scripts])
        rows = [{**s, "last_run_status": last.get(int(s["id"]), "")} for s in self.scripts]
        self.listing.value = html_table(
            rows,
            [
                ("id", "id"),
                ("name", "name"),
                ("version", "v"),
                ("kind", "kind"),
                ("model_type", "model"),
                ("status", "status"),
                ("last_run_status", "last run"),
            ],
            empty="no scripts yet",
        )

    def _run_changed(self, run_id: int) -> None:
        state = self.states.get(run_id)
        script_id = state.get("script_id")
        if any(int(s["id"]) == script_id for s in self.scripts):
            self.listing_throttle.poke()
        if (
            script_id is not None
            and script_id == self.selector.value
            and run_id not in self.runs.rows
        ):
            self.runs.add(run_id)  # started elsewhere (another tab, a schedule)
        if run_id == self.run_id:
            self._show_run_message()

    def upload(self) -> None:
        picked = _uploaded(self.file)
        if picked is None:
            self.message.value = error_html(ValueError("choose a .py file first"))
            return
        name, content = picked
        script = self._act(
            lambda: self.client.upload_script(
                content,
                filename=name,
                kind=self.kind.value,
                model_type=self.model_type.value if self.kind.value == "model" else None,
                description=self.description.value or None,
            )
        )
        if script:
            # what described this upload must not describe the next one
            self.description.value = ""
            self.file.value = ()
            self.message.value = f"uploaded {esc(script.get('name'))} v{esc(script.get('version'))}"
            self.refresh()
            self.selector.value = int(script["id"])

    def show_script(self) -> None:
        sid = self.selector.value
        self.delete.cancel()
        if sid is None:
            self.versions.value = ""
            self.runs.show(self._active_started_here())
            return
        script = self._act(lambda: self.client.script(sid)) or {}
        self.versions.value = "<b>Versions</b>" + html_table(
            script.get("versions") or [],
            [("id", "id"), ("version", "v"), ("status", "status"), ("created_at", "uploaded")],
        )
        mark = self.states.reading()
        listed = self._act(lambda: self.client.runs(script_id=sid, per_page=20))
        runs = _records(listed) if listed is not None else []
        self.states.merge(runs, mark)
        self.runs.show([int(r["id"]) for r in runs] + self._active_started_here())

    def _active_started_here(self) -> list[int]:
        return [i for i in self.started_here if is_active(self.states.get(i))]

    # --- runs ---

    def start(self) -> None:
        sid = self.selector.value
        if sid is None:
            self.message.value = error_html(ValueError("pick a script first"))
            return

        def go() -> dict[str, Any]:
            config = json.loads(self.config.value or "{}")
            if not isinstance(config, dict):
                raise ValueError("config must be a JSON object")
            return self.client.start_run(sid, args=shlex.split(self.args.value), config=config)

        run = self._act(go)
        if run:
            run_id = int(run["id"])
            self.states.merge([run], self.states.reading())
            self.started_here.add(run_id)
            self.runs.add(run_id)
            self.watch(run_id)

    def watch(self, run_id: int) -> None:
        """Show ``run_id``'s progress and log (Watch in the runs list)."""
        self.run_id = run_id
        self._show_run_message()
        self.progress.follow(run_id)
        self.log.follow(run_id)

    def _show_run_message(self) -> None:
        state = self.states.get(self.run_id)
        if self.run_id is not None:
            self.run_message.value = (
                f'<span class="eo-run-message" data-status="{esc(state.get("status"))}">'
                f"run {self.run_id} {esc(state.get('status', ''))}</span>"
            )

    def kill(self) -> None:
        """Kill the watched run (each run of the list has its own Kill)."""
        if self.run_id is not None:
            self.runs.kill(self.run_id)

    def toggle_archive(self) -> None:
        sid = self.selector.value
        if sid is None:
            return
        status = (self._act(lambda: self.client.script(sid)) or {}).get("status")
        new = "active" if status == "archived" else "archived"
        if self._act(lambda: self.client.update_script(sid, status=new)):
            self.refresh()

    def _deleted(self, script_id: int, message: str) -> None:
        self.message.value = message
        self.refresh()
