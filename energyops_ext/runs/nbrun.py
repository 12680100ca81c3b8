"""``python -m energyops_ext.runs.nbrun NOTEBOOK OUTPUT``: a notebook run, inside the run's
sandbox.

Papermill injects the run's parameters (``ENERGYOPS_PARAMETERS``) after the cell tagged
``parameters`` and executes the notebook; the kernel is a child of this process, so it carries
the run's environment marker and lives in the run's pid namespace: the engine's tree kill
takes it and everything it started. Each output line is printed as ``[cell N] text`` the
moment it arrives (stdout and stderr kept apart), so the engine's log, levels and markers
see it like a script's line; after each cell a ``::energyops {"progress": ...}`` marker
reports cells done / cells. A failing cell ends the run with exit code 1 and its traceback
in the log. The executed notebook is written to OUTPUT after every cell (an artifact).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from typing import Any, TextIO

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
KERNEL = "python3"


class CellLines:
    """One stream of the kernel's output, cut into lines prefixed with their cell."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.label = "setup"
        self._partial = ""

    def write(self, text: str) -> None:
        pieces = (self._partial + text).replace("\r\n", "\n").split("\n")
        self._partial = pieces.pop()
        for line in pieces:
            self.out.write(f"[{self.label}] {line}\n")
        self.out.flush()

    def end_cell(self) -> None:
        """A line the cell left unfinished is its own line."""
        if self._partial:
            self.out.write(f"[{self.label}] {self._partial}\n")
            self._partial = ""
        self.out.flush()


def _emit(**values: Any) -> None:
    sys.stdout.write("::energyops " + json.dumps(values, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _client_class() -> Any:
    from nbclient.exceptions import CellExecutionError
    from papermill.clientwrap import PapermillNotebookClient

    from .notebooks import cell_labels

    class EnergyOpsNotebookClient(PapermillNotebookClient):  # type: ignore[misc]
        """papermill's client, with each output labelled by its cell and progress markers."""

        streams: dict[str, CellLines]
        failed_label: str | None = None

        def papermill_execute_cells(self) -> None:
            labels = cell_labels(self.nb)
            total = len(self.nb.cells)
            for index, cell in enumerate(self.nb.cells):
                for stream in self.streams.values():
                    stream.label = labels[index]
                try:
                    self.nb_man.cell_start(cell, index)
                    self.execute_cell(cell, index)
                except CellExecutionError as exc:
                    type(self).failed_label = labels[index]
                    self.nb_man.cell_exception(
                        self.nb.cells[index], cell_index=index, exception=exc
                    )
                    break
                finally:
                    self.nb_man.cell_complete(self.nb.cells[index], cell_index=index)
                    for stream in self.streams.values():
                        stream.end_cell()
                    _emit(progress=round(100.0 * (index + 1) / total, 2))

        def log_output_message(self, output: Any) -> None:
            if output.output_type == "stream":
                target = self.streams["stderr" if output.name == "stderr" else "stdout"]
                target.write("".join(output.text))
            elif output.output_type in ("execute_result", "display_data"):
                text = (output.get("data") or {}).get("text/plain")
                if text:
                    self.streams["stdout"].write("".join(text) + "\n")

    return EnergyOpsNotebookClient


def _start_kernel() -> Any:
    """The kernel, started before papermill is imported: its start-up (a second process)
    overlaps the second or so this process spends importing papermill and nbformat. IPC
    sockets in the run directory: no TCP port, no network needed."""
    from jupyter_client.manager import KernelManager

    manager: Any = KernelManager
    km = manager(kernel_name=KERNEL, transport="ipc", ip="kernel-ipc")
    km.start_kernel()
    return km


def _engine(client: Any, streams: dict[str, CellLines], km: Any) -> Any:
    from papermill.engines import NBClientEngine

    class EnergyOpsEngine(NBClientEngine):  # type: ignore[misc]
        @classmethod
        def execute_managed_notebook(
            cls, nb_man: Any, kernel_name: str, start_timeout: int = 60, **_kwargs: Any
        ) -> Any:
            client.streams = streams
            return client(
                nb_man,
                km=km,
                kernel_name=kernel_name,
                timeout=None,
                startup_timeout=start_timeout,
                log_output=False,
                # any output at all: log_output_message sees it
                stdout_file=streams["stdout"],
                stderr_file=streams["stderr"],
            ).execute()

    return EnergyOpsEngine


def _report_failure(exc: Any, label: str | None) -> None:
    where = label or f"cell {exc.cell_index + 1}"
    err = sys.stderr
    err.write(f"[{where}] failed: {exc.ename}: {exc.evalue}\n")
    for chunk in exc.traceback or []:
        for line in ANSI.sub("", chunk).splitlines():
            err.write(f"[{where}] {line}\n")
    err.flush()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("use: python -m energyops_ext.runs.nbrun NOTEBOOK OUTPUT", file=sys.stderr)
        return 2
    source, output = argv
    # Stop (SIGINT) is for the model in the kernel, which gets the signal itself; this
    # process stays to save the notebook. SIGTERM and SIGKILL end it as usual.
    signal.signal(signal.SIGINT, lambda _signum, _frame: None)
    km = _start_kernel()
    try:
        return _execute(source, output, km)
    finally:
        km.shutdown_kernel(now=True)


def _execute(source: str, output: str, km: Any) -> int:
    import papermill
    from papermill.engines import papermill_engines
    from papermill.exceptions import PapermillExecutionError

    parameters = json.loads(os.environ.get("ENERGYOPS_PARAMETERS") or "{}")
    streams = {"stdout": CellLines(sys.stdout), "stderr": CellLines(sys.stderr)}
    client = _client_class()
    papermill_engines.register("energyops", _engine(client, streams, km))
    try:
        papermill.execute_notebook(
            source,
            output,
            parameters=parameters or None,
            engine_name="energyops",
            kernel_name=KERNEL,
            progress_bar=False,
            cwd=os.getcwd(),
        )
    except PapermillExecutionError as exc:
        _report_failure(exc, client.failed_label)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
