"""Notebooks as scripts and models: upload checks (valid nbformat 4, every code cell compiles,
the parameters cell read statically) and the executed notebook as sanitized HTML."""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import Invalid
from .parameters import DeclarationError, Parameter, cell_parameters

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
MAX_MESSAGE = 300
_SCRIPT_ELEMENT = re.compile(r"<script\b[^>]*>.*?</script\s*>", re.I | re.S)
_SCRIPT_TAG = re.compile(r"</?script\b[^>]*>?", re.I)


def _bad(message: str, **details: Any) -> Invalid:
    return Invalid(message, code="invalid_script", details={"field": "file", **details})


def _transform(source: str) -> str:
    """IPython syntax (magics, ``!shell``, ``x?``) as the plain Python the kernel runs."""
    from IPython.core.inputtransformer2 import TransformerManager

    manager: Any = TransformerManager
    return str(manager().transform_cell(source))


def read_notebook(text: str) -> Any:
    """An nbformat 4 notebook node, or a 422 saying why the text is not one."""
    import nbformat

    try:
        raw = json.loads(text)
    except ValueError as exc:
        line, column = getattr(exc, "lineno", 0), getattr(exc, "colno", 0)
        message = getattr(exc, "msg", str(exc))
        raise _bad(
            f"not a notebook: invalid JSON at line {line}, column {column}: {message}",
            line=line,
            column=column,
        ) from None
    if not isinstance(raw, dict) or "cells" not in raw or "nbformat" not in raw:
        raise _bad("not a notebook: the JSON has no nbformat and cells")
    if raw.get("nbformat") != 4:
        raise _bad(f"notebooks must be nbformat 4; this one is nbformat {raw.get('nbformat')!r}")
    try:
        api: Any = nbformat
        nb = api.reads(text, as_version=4)
        api.validate(nb)
    except Exception as exc:  # nbformat raises several kinds for a broken document
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _bad(f"not a valid nbformat 4 notebook: {message[:MAX_MESSAGE]}") from None
    return nb


def check_notebook(text: str, name: str) -> list[Parameter]:
    """Every rule of a notebook upload; returns the parameters of its parameters cell."""
    nb = read_notebook(text)
    language = (nb.metadata.get("kernelspec") or {}).get("language") or (
        nb.metadata.get("language_info") or {}
    ).get("name")
    if language not in (None, "python"):
        raise _bad(f"only Python notebooks can run; this one is {language!r}")
    code_cells = [(n, c) for n, c in enumerate(nb.cells, start=1) if c.cell_type == "code"]
    if not code_cells:
        raise _bad("the notebook has no code cell")
    params: list[Parameter] = []
    tagged = False
    for number, cell in code_cells:
        source = cell.source
        try:
            compile(_transform(source), f"{name} cell {number}", "exec", dont_inherit=True)
        except SyntaxError as exc:
            line, column = exc.lineno or 0, exc.offset or 0
            raise _bad(
                f"cell {number}: syntax error at line {line}, column {column}: {exc.msg}",
                cell=number,
                line=line,
                column=column,
            ) from None
        except ValueError as exc:
            raise _bad(f"cell {number}: {exc}", cell=number) from None
        if PARAMETERS_TAG in (cell.metadata.get("tags") or []) and not tagged:
            tagged = True
            try:
                params = cell_parameters(source)
            except DeclarationError as exc:
                where = f"cell {number}" + (f", line {exc.line}" if exc.line else "")
                raise Invalid(
                    f"{where}: {exc.message}",
                    code="invalid_parameters",
                    details={"field": "file", "cell": number, "line": exc.line},
                ) from None
    return params


def cell_labels(nb: Any) -> list[str]:
    """``cell N`` for each cell of an executed notebook, N its position in the uploaded one
    (papermill's injected parameters cell is ``parameters``)."""
    labels = []
    position = 0
    for cell in nb.cells:
        if INJECTED_TAG in (cell.metadata.get("tags") or []):
            labels.append("parameters")
        else:
            position += 1
            labels.append(f"cell {position}")
    return labels


def strip_scripts(html: str) -> str:
    """No <script> element or tag survives, however it is nested or cut."""
    previous = None
    while previous != html:
        previous = html
        html = _SCRIPT_ELEMENT.sub("", html)
        html = _SCRIPT_TAG.sub("", html)
    return html


def notebook_html(data: bytes) -> str:
    """The executed notebook as HTML: outputs sanitized by nbconvert (no script, no event
    handler, no javascript: link), then every script element of the template removed."""
    from nbconvert import HTMLExporter

    nb = read_notebook(data.decode("utf-8", "replace"))
    exporter_class: Any = HTMLExporter
    exporter = exporter_class(template_name="lab", sanitize_html=True)
    body, _resources = exporter.from_notebook_node(nb)
    return strip_scripts(str(body))
