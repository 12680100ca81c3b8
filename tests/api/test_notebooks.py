"""Notebooks as scripts and models: upload checks, parameterized runs executed by papermill in
the sandbox (values injected, output live with its cell, progress, markers), a failing cell,
the executed notebook as ipynb and sanitized HTML, and a kill that leaves no process."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from energyops_ext.runs import registry
from energyops_ext.runs.sandbox import RunPaths, process_marker
from energyops_ext.services import Services

from .conftest import Fetch, assert_error, body
from .models_helpers import executed_outputs, log_lines, log_texts, notebook
from .runs_helpers import FAST_RUNS, live_pids, start_run, upload, wait_for, wait_until

PARAMS = """capacity_mw: float = 50.0  # plant capacity; bounds [0, 500]
mode: str = "fast"  # solver mode; choices: fast, exact
day: str = "2025-01-01"  # delivery day; type: date
"""

LIVE = notebook(
    'import json, os, time\nprint("cap", capacity_mw, mode, day)\n'
    'print("env", json.loads(os.environ["ENERGYOPS_PARAMETERS"])["capacity_mw"])',
    'print("first line", flush=True)\ntime.sleep(1.5)\nprint("Objective value: 12.5")\n'
    'print("::energyops {\\"results\\": 96}")',
    "from IPython.display import HTML, display\n"
    "display(HTML('<b>bold</b><script>alert(1)</script><img src=x onerror=alert(2)>'))\n"
    "import sys\nprint('careful', file=sys.stderr)\n6 * 7",
    parameters=PARAMS,
)


@pytest.fixture
def energyops_config() -> dict[str, Any]:
    return dict(FAST_RUNS)


async def _upload(api: Fetch, name: str, data: bytes, **fields: str) -> dict[str, Any]:
    response = await upload(api, name, data, **fields)
    assert response.code == 201, response.body
    script: dict[str, Any] = body(response)
    return script


async def test_parameterized_notebook_end_to_end(api: Fetch) -> None:
    script = await _upload(api, "test_live.ipynb", LIVE)
    assert script["format"] == "ipynb"
    assert [(p["name"], p["type"], p["default"]) for p in script["parameters"]] == [
        ("capacity_mw", "float", 50.0),
        ("mode", "choice", "fast"),
        ("day", "date", "2025-01-01"),
    ]
    assert script["parameters"][0]["max"] == 500.0
    version = body(await api("GET", f"scripts/{script['id']}"))
    assert version["format"] == "ipynb" and version["parameters"] == script["parameters"]

    run = await start_run(api, script["id"], parameters={"capacity_mw": 75, "day": "2025-10-06"})
    assert run["parameters"] == {"capacity_mw": 75.0, "mode": "fast", "day": "2025-10-06"}

    async def first_line_while_running() -> bool:
        texts = await log_texts(api, run["id"])
        if "[cell 4] first line" in texts:
            now = body(await api("GET", f"runs/{run['id']}"))
            assert now["status"] == "running", "the line came only at the end"
            assert "[cell 4] Objective value: 12.5" not in texts
            return True
        return False

    await wait_until(first_line_while_running, timeout_s=30)
    done = await wait_for(api, run["id"], timeout_s=60)
    assert done["status"] == "succeeded", done
    assert done["objective_value"] == 12.5 and done["results_count"] == 96
    assert done["progress"] == 100.0
    lines = await log_lines(api, run["id"])
    texts = [line["text"] for line in lines]
    assert "[cell 3] cap 75.0 fast 2025-10-06" in texts
    assert "[cell 3] env 75.0" in texts
    assert "[cell 5] 42" in texts
    careful = next(line for line in lines if line["text"] == "[cell 5] careful")
    assert careful["stream"] == "stderr" and careful["level"] == "warning"
    progress = [t for t in texts if t.startswith('::energyops {"progress"')]
    assert progress[-1] == '::energyops {"progress":100.0}' and len(progress) == 6

    response = await api("GET", f"runs/{run['id']}/notebook")
    assert response.code == 200
    assert response.headers["Content-Type"] == "application/x-ipynb+json"
    executed = json.loads(response.body)
    tags = [c["metadata"].get("tags", []) for c in executed["cells"]]
    assert ["injected-parameters"] in tags
    injected = executed["cells"][tags.index(["injected-parameters"])]["source"]
    assert "capacity_mw = 75.0" in "".join(injected)
    assert any("cap 75.0 fast 2025-10-06" in t for t in executed_outputs(response.body))
    artifacts = body(await api("GET", f"runs/{run['id']}/artifacts"))["items"]
    assert [a["name"] for a in artifacts] == ["notebook.ipynb"]

    html = await api("GET", f"runs/{run['id']}/notebook", params={"format": "html"})
    assert html.code == 200 and html.headers["Content-Type"].startswith("text/html")
    assert "script-src" not in html.headers["Content-Security-Policy"]
    page = html.body.decode()
    assert "cap 75.0 fast 2025-10-06" in page and "<b>bold</b>" in page
    low = page.lower()
    assert "<script" not in low, low[low.find("<script") - 200 : low.find("<script") + 100]
    assert re.search(r"<[^>]*\bonerror\s*=", low) is None
    assert "&lt;script&gt;alert(1)" in page  # the output's script is text, not markup


async def test_failing_cell_fails_the_run_with_its_number_and_traceback(api: Fetch) -> None:
    source = notebook(
        "x = 1\nprint('one')",
        "def explode():\n    raise ValueError('boom in cell 3')\nexplode()",
        "print('never')",
        markdown="# failing",
    )
    script = await _upload(api, "test_fail.ipynb", source)
    assert script["parameters"] == []
    run = await start_run(api, script["id"])
    done = await wait_for(api, run["id"], timeout_s=60)
    assert done["status"] == "failed" and done["exit_code"] == 1
    lines = await log_lines(api, run["id"])
    texts = [line["text"] for line in lines]
    assert "[cell 2] one" in texts
    failed = next(line for line in lines if line["text"].startswith("[cell 3] failed"))
    assert failed["text"] == "[cell 3] failed: ValueError: boom in cell 3"
    assert failed["stream"] == "stderr" and failed["level"] == "error"
    assert any(t.startswith("[cell 3] ") and "explode()" in t for t in texts)
    assert not any("never" in t for t in texts)
    notes = body(await api("GET", "notifications"))["items"]
    assert [(n["type"], n["message"]) for n in notes if n["entity_id"] == run["id"]] == [
        ("run_failed", "exit code 1: [cell 3] failed: ValueError: boom in cell 3")
    ]  # the failure and its traceback: one error, told once
    executed = await api("GET", f"runs/{run['id']}/notebook")
    assert executed.code == 200
    assert any("boom in cell 3" in json.dumps(c) for c in json.loads(executed.body)["cells"])


async def test_notebook_endpoint_errors(api: Fetch) -> None:
    response = await upload(api, "test_plain.py", "print('hi')\n")
    sid = body(response)["id"]
    run = await start_run(api, sid)
    await wait_for(api, run["id"])
    assert_error(
        await api("GET", f"runs/{run['id']}/notebook"),
        404,
        "not_a_notebook",
        f"run {run['id']} is not a notebook run (test_plain.py)",
    )
    assert_error(
        await api("GET", f"runs/{run['id']}/notebook", params={"format": "pdf"}),
        400,
        "invalid_parameter",
        "format must be ipynb or html",
    )
    assert_error(await api("GET", "runs/9999/notebook"), 404, "run_not_found")


CELL_3_SYNTAX = notebook("x = 1", "y = (", markdown="m")  # cell 3 in the file: line 1
BAD_NOTEBOOKS = [
    (b"{not json", 422, "invalid_script", "not a notebook: invalid JSON at line 1, column 2"),
    (b'{"cells": []}', 422, "invalid_script", "not a notebook: the JSON has no nbformat and cells"),
    (
        b'{"nbformat": 3, "nbformat_minor": 0, "cells": [], "metadata": {}}',
        422,
        "invalid_script",
        "notebooks must be nbformat 4; this one is nbformat 3",
    ),
    (
        b'{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "code"}]}',
        422,
        "invalid_script",
        "not a valid nbformat 4 notebook",
    ),
    (
        notebook("a = 1", "for i in range(3):\n    print(i\nz = 2", markdown=None),
        422,
        "invalid_script",
        "cell 2: syntax error at line 2, column 10",
    ),
    (CELL_3_SYNTAX, 422, "invalid_script", "cell 3: syntax error at line 1, column 5"),
    (
        notebook("x = 1", parameters="n: int = 5  # bounds [10, 20]"),
        422,
        "invalid_parameters",
        "cell 2, line 1: parameter 'n': the default does not fit: parameter 'n' must be between "
        "10 and 20; got 5",
    ),
    (notebook(markdown="only text"), 422, "invalid_script", "the notebook has no code cell"),
    (b"", 422, "invalid_script", "file is empty"),
]


@pytest.mark.parametrize(("data", "status", "code", "message"), BAD_NOTEBOOKS)
async def test_bad_notebooks_are_refused(
    api: Fetch, data: bytes, status: int, code: str, message: str
) -> None:
    error = assert_error(await upload(api, "test_bad.ipynb", data), status, code, message)
    assert error["details"]["field"] == "file"


async def test_notebook_upload_details_and_magics(api: Fetch) -> None:
    error = assert_error(await upload(api, "test_bad.ipynb", CELL_3_SYNTAX), 422)
    assert error["details"] == {"field": "file", "cell": 3, "line": 1, "column": 5}
    magic = notebook("%time x = 1\n!echo shell", "x?")
    assert (await upload(api, "test_magic.ipynb", magic)).code == 201
    ruby = json.loads(notebook("puts 1"))
    ruby["metadata"]["kernelspec"]["language"] = "ruby"
    assert_error(
        await upload(api, "test_ruby.ipynb", json.dumps(ruby).encode()),
        422,
        "invalid_script",
        "only Python notebooks can run; this one is 'ruby'",
    )
    assert_error(
        await upload(api, "test_x.txt", b"x"), 415, "unsupported_file_type", "(.py) and notebooks"
    )
    model = await upload(api, "so_notebook.ipynb", notebook("print(1)"), kind="model")
    assert_error(model, 422, None, "model_type is required")


BAD_RUN_PARAMETERS: list[tuple[dict[str, Any], str]] = [
    ({"capacity_mw": 501}, "parameter 'capacity_mw' must be between 0 and 500; got 501"),
    ({"mode": "slow"}, "parameter 'mode' must be one of fast, exact; got 'slow'"),
    ({"day": "2025-13-01"}, "parameter 'day' must be a date (YYYY-MM-DD); got '2025-13-01'"),
    ({"power": 1}, "unknown parameter 'power' (declared: capacity_mw, mode, day)"),
    ({"capacity_mw": "big"}, "parameter 'capacity_mw' must be a number; got 'big'"),
]


async def test_bad_run_parameters_are_refused_before_queueing(api: Fetch) -> None:
    script = await _upload(api, "test_params.ipynb", notebook("print(1)", parameters=PARAMS))
    for values, message in BAD_RUN_PARAMETERS:
        response = await api("POST", f"scripts/{script['id']}/runs", json={"parameters": values})
        error = assert_error(response, 422, "invalid_parameter", message)
        assert error["message"] == message
        assert error["details"]["parameter"] == next(iter(values.keys()))
    assert_error(
        await api("POST", f"scripts/{script['id']}/runs", json={"parameters": [1]}),
        422,
        "invalid_field",
        "parameters must be a JSON object",
    )
    assert_error(
        await api("POST", f"scripts/{script['id']}/runs", json={"args": ["--x"]}),
        400,
        "invalid_field",
        "args apply to .py scripts; notebooks take parameters",
    )
    assert body(await api("GET", "runs", params={"script_id": str(script["id"])}))["total"] == 0


KILL = notebook(
    "import os, subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "with open(os.environ['ENERGYOPS_OUTPUT_DIR'] + '/pids', 'w') as fh:\n"
    "    fh.write(f'{os.getpid()}\\n{child.pid}\\n')\n"
    "print('kernel ready', flush=True)\n"
    "time.sleep(60)",
)


def _survivors(services: Services, run_id: int, pid_file: Path) -> set[int]:
    found = registry.with_marker(
        process_marker(RunPaths.for_run(services.settings.sandbox_dir, run_id))
    )
    if services.runs.engine.sandbox and services.runs.engine.sandbox.mode != "bwrap":
        found |= set(live_pids(pid_file))
    return found


@pytest.mark.parametrize(
    "energyops_config",
    [{**FAST_RUNS, "sandbox_mode": "bwrap"}, {**FAST_RUNS, "sandbox_mode": "none"}],
    ids=["bwrap", "none"],
)
async def test_kill_ends_the_kernel_and_its_children(api: Fetch, services: Services) -> None:
    script = await _upload(api, "test_kernel_kill.ipynb", KILL)
    run = await start_run(api, script["id"])
    pid_file = services.settings.sandbox_dir / str(run["id"]) / "output" / "pids"

    async def ready() -> bool:
        return "[cell 2] kernel ready" in await log_texts(api, run["id"])

    await wait_until(ready, timeout_s=30)
    # the runner, the kernel and the kernel's child (and bubblewrap's own processes)
    assert len(_survivors(services, run["id"], pid_file)) >= 3
    assert (await api("DELETE", f"runs/{run['id']}")).code == 202
    done = await wait_for(api, run["id"], timeout_s=30)
    assert done["status"] == "killed"
    assert _survivors(services, run["id"], pid_file) == set()
