"""Factories for notebook and model tests: notebooks as files, log texts, stat polling."""

from __future__ import annotations

import json
from typing import Any

from .conftest import Fetch, body


def notebook(*cells: str, parameters: str | None = None, markdown: str | None = "# Model") -> bytes:
    """An nbformat 4 notebook: an optional markdown cell, an optional parameters cell (tagged
    ``parameters``), then one code cell per source."""
    import nbformat as nbformat_module

    nbformat: Any = nbformat_module
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Py"}
    if markdown is not None:
        nb.cells.append(nbformat.v4.new_markdown_cell(markdown))
    if parameters is not None:
        cell = nbformat.v4.new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nb.cells.extend(nbformat.v4.new_code_cell(source) for source in cells)
    return str(nbformat.writes(nb)).encode()


async def log_texts(api: Fetch, run_id: int) -> list[str]:
    lines = body(await api("GET", f"runs/{run_id}/logs", params={"limit": "10000"}))["items"]
    return [line["text"] for line in lines]


async def log_lines(api: Fetch, run_id: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = body(
        await api("GET", f"runs/{run_id}/logs", params={"limit": "10000"})
    )["items"]
    return items


def executed_outputs(data: bytes) -> list[str]:
    """Every text output of an executed notebook, in order."""
    nb = json.loads(data)
    texts = []
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            if output["output_type"] == "stream":
                texts.append("".join(output["text"]))
            elif "data" in output and "text/plain" in output["data"]:
                texts.append("".join(output["data"]["text/plain"]))
    return texts
