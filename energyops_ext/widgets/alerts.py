"""Alert panels: the rules with their state and history (create, pause, resume, delete), and a
read-only list of what fires now for the operations dashboard.

Both talk to the server only through the client (``/alerts``) and re-read when an ``alert.*``
event arrives on topic ``alerts``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as widgets

from .buffer import esc, format_number, html_table
from .client import EnergyOpsAPIError, EnergyOpsClient
from .controls import ManageButtons
from .events import EventStream
from .panels import Refreshing

ALERT_EVENTS = frozenset(
    {
        "alert.pending",
        "alert.firing",
        "alert.resolved",
        "alert.normal",
        "alert.created",
        "alert.updated",
        "alert.deleted",
    }
)
SERIES = ("dam_price", "rtm_price", "gdam_price", "dam_rtm_spread", "schedule_deviation")
STATE_COLOURS = {"firing": "#dc2626", "pending": "#f59e0b", "normal": "#16a34a"}


def state_badge(state: str, enabled: bool = True) -> str:
    shown = state if enabled else "paused"
    colour = STATE_COLOURS.get(state, "#6b7280") if enabled else "#6b7280"
    return (
        f'<span class="eo-alert-state" data-state="{esc(shown)}" '
        f'style="color:{colour};font-weight:600">{esc(shown)}</span>'
    )


def condition(rule: Mapping[str, Any]) -> str:
    text = f"{rule.get('series')} {rule.get('operator')} {format_number(rule.get('threshold'))}"
    if rule.get("recovery_threshold") is not None:
        text += f" (recovers past {format_number(rule.get('recovery_threshold'))})"
    if rule.get("aggregate") == "daily_avg":
        text += ", daily average"
    if rule.get("unit") == "pct":
        text += ", %"
    return text


def scope_text(scope: Mapping[str, Any] | None) -> str:
    scope = scope or {}
    blocks = scope.get("blocks")
    return str(scope.get("date", "any")) + (f", blocks {blocks[0]}-{blocks[1]}" if blocks else "")


def rules_html(rules: Sequence[Mapping[str, Any]]) -> str:
    """Rules as an escaped table; the state cell is a coloured badge."""
    if not rules:
        return '<div class="eo-empty">no alert rules</div>'
    rows = "".join(
        "<tr>"
        f"<td>{esc(r.get('id'))}</td><td>{esc(r.get('name'))}</td>"
        f"<td>{esc(condition(r))}</td><td>{esc(scope_text(r.get('scope')))}</td>"
        f"<td>{state_badge(str(r.get('state')), bool(r.get('enabled', True)))}</td>"
        f"<td>{esc(r.get('since') or '')}</td>"
        f"<td>{esc(format_number(r.get('last_value')))}</td>"
        "</tr>"
        for r in rules
    )
    head = "".join(
        f"<th>{h}</th>" for h in ("id", "name", "condition", "scope", "state", "since", "value")
    )
    return (
        f'<table class="eo-table eo-alerts"><thead><tr>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def history_html(items: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for item in items:
        detail = item.get("detail") or {}
        blocks = ", ".join(str(b.get("block")) for b in detail.get("blocks") or [])
        rows.append(
            {
                "when": item.get("created_at"),
                "change": f"{item.get('from_state')} → {item.get('to_state')}",
                "value": format_number(item.get("value")),
                "threshold": format_number(item.get("threshold")),
                "date": detail.get("date", ""),
                "blocks": blocks or detail.get("reason", ""),
                "notified": "yes" if item.get("notified") else "",
            }
        )
    columns = [(k, k) for k in ("when", "change", "value", "threshold", "date", "blocks")]
    return html_table(rows, [*columns, ("notified", "notified")], empty="no state changes yet")


def firing_html(rules: Sequence[Mapping[str, Any]]) -> str:
    active = [r for r in rules if r.get("state") in ("firing", "pending") and r.get("enabled")]
    if not active:
        return '<div class="eo-empty eo-no-alerts">no alert is firing</div>'
    active.sort(key=lambda r: (r.get("state") != "firing", str(r.get("since") or "")))
    return rules_html(active)


def rule_body(
    *,
    name: str,
    series: str,
    operator: str,
    threshold: float,
    recovery: str,
    pending_evaluations: int,
    scope: str,
    channels: str,
) -> dict[str, Any]:
    """The POST body of the create form (empty recovery: none; one channel URL a line)."""
    body: dict[str, Any] = {
        "name": name,
        "series": series,
        "operator": operator,
        "threshold": threshold,
        "pending_evaluations": pending_evaluations,
        "scope": scope.strip() or "any",
        "channels": [line.strip() for line in channels.splitlines() if line.strip()],
    }
    if recovery.strip():
        body["recovery_threshold"] = float(recovery)
    return body


class FiringAlertsPanel(Refreshing):
    """Read-only: the rules that fire or are pending now (GETs only)."""

    event_types = ALERT_EVENTS
    topics = ("alerts",)

    def render(self) -> str:
        answer = self.client.get("alerts", enabled="true", per_page=200)
        return firing_html(answer.get("items", []))


class AlertsPanel:
    """Rules with their state, one rule's history, and create / pause / resume / delete."""

    def __init__(self, client: EnergyOpsClient, stream: EventStream) -> None:
        self.client = client
        self.listing = widgets.HTML()
        self.history = widgets.HTML()
        self.message = widgets.HTML()
        self.selector = widgets.Dropdown(description="Rule", options=[], layout={"width": "320px"})
        self.name = widgets.Text(description="Name", placeholder="DAM evening spike")
        self.series = widgets.Dropdown(description="Series", options=SERIES)
        self.operator = widgets.Dropdown(description="Operator", options=[">", "<"])
        self.threshold = widgets.FloatText(description="Threshold", value=9000.0)
        self.recovery = widgets.Text(description="Recovery", placeholder="none")
        self.pending = widgets.BoundedIntText(description="Pending", value=1, min=1, max=1000)
        self.scope = widgets.Text(description="Scope", value="any")
        self.channels = widgets.Textarea(
            description="Channels", placeholder="one apprise URL a line"
        )
        self.buttons = ManageButtons(self.create, self.toggle, self.delete)
        self.selector.observe(lambda _c: self.show_history(), "value")
        form = widgets.VBox(
            [
                widgets.HBox([self.name, self.series, self.operator]),
                widgets.HBox([self.threshold, self.recovery, self.pending]),
                widgets.HBox([self.scope, self.channels, self.buttons.create]),
            ]
        )
        self.widget = widgets.VBox(
            [
                self.listing,
                self.buttons.row(self.selector),
                self.history,
                form,
                self.message,
            ]
        )
        self.widget.add_class("eo-alerts-panel")
        self.rules: list[dict[str, Any]] = []
        stream.add_listener(self._on_event)
        stream.subscribe(["alerts"])
        self.refresh()

    def _on_event(self, event: Mapping[str, Any]) -> None:
        if event.get("type") in ALERT_EVENTS:
            self.refresh()

    def _act(self, action: Any) -> Any:
        try:
            result = action()
        except (EnergyOpsAPIError, ValueError) as exc:
            self.message.value = f'<div class="eo-error">{esc(exc)}</div>'
            return None
        self.message.value = ""
        return result

    def refresh(self) -> None:
        answer = self._act(lambda: self.client.get("alerts", per_page=200))
        if answer is None:
            return
        self.rules = list(answer.get("items", []))
        self.listing.value = rules_html(self.rules)
        current = self.selector.value
        self.selector.options = [(f"{r['id']}: {r['name']}", r["id"]) for r in self.rules]
        ids = [r["id"] for r in self.rules]
        self.selector.value = current if current in ids else (ids[0] if ids else None)
        self.show_history()

    def show_history(self) -> None:
        rule_id = self.selector.value
        if rule_id is None:
            self.history.value = ""
            return
        answer = self._act(lambda: self.client.get(f"alerts/{rule_id}/history", limit=20))
        if answer is not None:
            self.history.value = history_html(answer.get("items", []))

    def create(self) -> dict[str, Any] | None:
        def post() -> Any:
            body = rule_body(
                name=self.name.value,
                series=self.series.value,
                operator=self.operator.value,
                threshold=float(self.threshold.value),
                recovery=self.recovery.value,
                pending_evaluations=int(self.pending.value),
                scope=self.scope.value,
                channels=self.channels.value,
            )
            return self.client.request("POST", "alerts", json_body=body)

        rule: dict[str, Any] | None = self._act(post)
        if rule is not None:
            self.refresh()
            self.selector.value = rule["id"]
            self.message.value = f'<div class="eo-ok">created rule {esc(rule["id"])}</div>'
        return rule

    def _selected(self) -> dict[str, Any] | None:
        return next((r for r in self.rules if r["id"] == self.selector.value), None)

    def toggle(self) -> None:
        rule = self._selected()
        if rule is None:
            return
        change = {"enabled": not rule["enabled"]}
        path = f"alerts/{rule['id']}"
        if self._act(lambda: self.client.request("PATCH", path, json_body=change)) is not None:
            self.refresh()

    def delete(self) -> None:
        self.buttons.hide_confirm()
        rule = self._selected()
        if rule is None:
            return
        path = f"alerts/{rule['id']}"
        self._act(lambda: self.client.request("DELETE", path))
        self.refresh()
