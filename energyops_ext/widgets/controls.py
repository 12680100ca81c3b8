"""The buttons shared by the panels that manage rules and schedules."""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as widgets

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
