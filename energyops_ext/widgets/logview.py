"""The log view: a small front-end widget that shows lines as text (never HTML), coloured by
level, and follows the end of the log until the user scrolls up (then it stays put and says
so, until they scroll back to the bottom)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import anywidget
import traitlets

from .buffer import LogLine

MARKER_PREFIX = "::energyops "
_CELL_LABEL = re.compile(r"^\[(?:cell \d+|parameters|setup)\] ")

_ESM = r"""
function render({ model, el }) {
  const box = document.createElement("div");
  box.className = "eo-log";
  const note = document.createElement("div");
  note.className = "eo-log-paused";
  note.textContent = "paused: scroll to the bottom to follow";
  note.hidden = true;
  el.classList.add("eo-logview");
  el.append(box, note);
  let follow = true;
  let shown = [];  // seqs of the rows in box, in order

  box.addEventListener("scroll", () => {
    follow = box.scrollTop + box.clientHeight >= box.scrollHeight - 8;
    note.hidden = follow;
  });

  function row(line) {
    const div = document.createElement("div");
    div.className = "eo-log-line eo-level-" + String(line[1]).replace(/[^a-z]/g, "");
    if (line[3]) div.classList.add("eo-log-marker");  // a ::energyops report line, dimmed
    div.dataset.seq = String(line[0]);
    div.textContent = line[2];  // text, never markup
    return div;
  }

  function draw() {
    const lines = model.get("lines") || [];
    const seqs = lines.map((l) => l[0]);
    const lastShown = shown.length ? shown[shown.length - 1] : null;
    const at = lastShown === null ? -1 : seqs.indexOf(lastShown);
    const keep = at >= 0 ? shown.filter((s) => s >= seqs[0]) : [];
    if (at >= 0 && keep.length === at + 1) {
      // same window moved on: drop rows that left it, append the new ones
      const drop = shown.length - keep.length;
      for (let i = 0; i < drop; i++) box.firstChild && box.removeChild(box.firstChild);
      const frag = document.createDocumentFragment();
      for (const line of lines.slice(at + 1)) frag.appendChild(row(line));
      box.appendChild(frag);
    } else {
      box.replaceChildren(...lines.map(row));
    }
    shown = seqs;
    el.dataset.lines = String(lines.length);
    if (follow) box.scrollTop = box.scrollHeight;
  }

  model.on("change:lines", draw);
  draw();
  return () => model.off("change:lines", draw);
}
export default { render };
"""

_CSS = """
.eo-logview { display: block; width: 100%; }
.eo-log {
  height: var(--eo-log-height, 320px); overflow-y: auto; background: #0f172a; color: #e2e8f0;
  font-family: var(--jp-code-font-family, monospace); font-size: 12px; line-height: 1.35;
  padding: 4px 8px; border-radius: 4px; white-space: pre-wrap; word-break: break-all;
}
.eo-log-line.eo-level-debug { color: #94a3b8; }
.eo-log-line.eo-level-info { color: #e2e8f0; }
.eo-log-line.eo-level-warning { color: #fbbf24; }
.eo-log-line.eo-level-error { color: #f87171; }
.eo-log-line.eo-log-marker { color: #64748b; opacity: 0.7; font-style: italic; }
.eo-log-paused { font-size: 11px; color: #b45309; padding: 2px 4px; }
"""


class LogView(anywidget.AnyWidget):
    """Shows ``lines`` ([seq, level, text, is_marker] rows, oldest first)."""

    _esm = _ESM
    _css = _CSS
    lines: traitlets.List[list[object]] = traitlets.List([]).tag(sync=True)

    def show(self, lines: Sequence[LogLine]) -> None:
        self.lines = [[line.seq, line.level, line.text, is_marker(line.text)] for line in lines]


def is_marker(text: str) -> bool:
    """A ``::energyops {...}`` report line (also behind a notebook's ``[cell 3] `` label):
    the server reads its figures; people rarely want to read it."""
    if text.startswith("[") and (label := _CELL_LABEL.match(text)):
        text = text[label.end() :]
    return text.lstrip().startswith(MARKER_PREFIX)
