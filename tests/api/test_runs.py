"""Runs over real subprocesses: output, results, environment, artifacts, events, notifications."""

from __future__ import annotations

import json
from typing import Any

import pytest

from energyops_ext.events import RUNS, Event, run_topic
from energyops_ext.services import Services

from .conftest import Fetch, assert_error, body
from .runs_helpers import FAST_RUNS, script_id, start_run, wait_for

MODEL = """
import json, os, sys
from energyops_ext import sdk
print("start", sys.argv[1:])
print("secret:", os.environ.get("ENERGYOPS_TEST_SECRET"))
print("env:", json.dumps(sorted(os.environ)))
print("config:", json.dumps(sdk.config()), os.environ["MODEL_TYPE"], os.environ["JOB_ID"])
print("inputs:", sorted(os.listdir(sdk.input_dir())))
sdk.progress(40)
print("Objective value: 125436.78")
sdk.results(500)
sdk.solver_time(0.812)
print("careful: warning ahead", file=sys.stderr)
print("Traceback (most recent call last): fake")
(sdk.output_dir() / "schedule.csv").write_text("block,mw\\n1,10\\n")
os.symlink("/etc/passwd", sdk.output_dir() / "passwd")
print("cwd:", os.getcwd())
print("tab\\there back\\\\slash")
"""


@pytest.fixture
def energyops_config() -> dict[str, Any]:
    return dict(FAST_RUNS)


@pytest.fixture
def events(services: Services) -> list[Event]:
    seen: list[Event] = []
    services.hub.add_listener(seen.append)
    return seen


async def test_model_run_reports_results_env_artifacts_and_events(
    api: Fetch, services: Services, events: list[Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENERGYOPS_TEST_SECRET", "do-not-leak")
    sid = await script_id(api, "dmo_model.py", MODEL, kind="model", model_type="DMO")
    run = await start_run(
        api,
        sid,
        args=["--day", "2025-01-01"],
        config={"horizon": 96},
        inputs=[{"kind": "market-snapshot", "from": "2025-01-01", "to": "2025-01-07"}],
    )
    assert run["status"] in ("queued", "running")
    done = await wait_for(api, run["id"])
    assert done["status"] == "succeeded", done
    assert done["exit_code"] == 0
    assert done["progress"] == 40
    assert done["objective_value"] == 125436.78
    assert done["results_count"] == 500
    assert done["solver_time_ms"] == 812
    assert done["error_count"] == 1
    assert done["runtime_ms"] > 0

    lines = body(await api("GET", f"runs/{run['id']}/logs"))["items"]
    texts = [line["text"] for line in lines]
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
    assert lines[0]["stream"] == "system" and "isolation" in lines[0]["text"]
    assert "start ['--day', '2025-01-01']" in texts
    assert "secret: None" in texts
    assert "tab\there back\\slash" in texts
    env_line = next(t for t in texts if t.startswith("env:"))
    expected_env = {
        "PATH",
        "HOME",
        "TMPDIR",
        "LANG",
        "PYTHONUNBUFFERED",
        "ENERGYOPS_RUN_ID",
        "ENERGYOPS_MODEL_TYPE",
        "ENERGYOPS_CONFIG",
        "ENERGYOPS_PARAMETERS",
        "ENERGYOPS_INPUT_DIR",
        "ENERGYOPS_OUTPUT_DIR",
        "JOB_ID",
        "MODEL_TYPE",
        "CONFIG",
        "LC_CTYPE",  # Python's locale coercion adds it
        "PWD",  # bubblewrap sets it to the run directory
    }
    assert set(json.loads(env_line[5:])) - expected_env == set()
    assert f'config: {{"horizon": 96}} DMO {run["id"]}' in texts
    assert "inputs: ['market-snapshot.csv']" in texts
    run_root = services.settings.sandbox_dir / str(run["id"])
    assert f"cwd: {run_root}" in texts
    levels = {line["text"]: line["level"] for line in lines}
    assert levels["careful: warning ahead"] == "warning"
    assert levels["Traceback (most recent call last): fake"] == "error"
    assert levels["Objective value: 125436.78"] == "info"

    artifacts = body(await api("GET", f"runs/{run['id']}/artifacts"))["items"]
    assert artifacts == [{"name": "schedule.csv", "size": 14}]
    csv = await api("GET", f"runs/{run['id']}/artifacts/schedule.csv")
    assert csv.code == 200 and csv.body == b"block,mw\n1,10\n"
    assert_error(await api("GET", f"runs/{run['id']}/artifacts/passwd"), 404)
    assert_error(await api("GET", f"runs/{run['id']}/artifacts/..%2Fscript.py"), 400)

    text = await api("GET", f"runs/{run['id']}/logs", params={"format": "text"})
    assert text.code == 200
    assert "attachment" in text.headers["Content-Disposition"]
    assert [line.split(" ", 2)[2] for line in text.body.decode().splitlines()] == texts

    types = [(e.topic, e.type) for e in events]
    assert (RUNS, "run.queued") in types and (RUNS, "run.started") in types
    finished = [e for e in events if e.type == "run.finished"]
    assert finished[0].data["status"] == "succeeded"
    assert finished[0].data["objective_value"] == 125436.78
    logged = [
        line["seq"]
        for e in events
        if e.topic == run_topic(run["id"]) and e.type == "run.log"
        for line in e.data["lines"]
    ]
    assert logged == list(range(1, len(lines) + 1))
    assert any(e.type == "run.progress" for e in events)


async def test_health_reports_sandbox_and_queue(api: Fetch) -> None:
    report = body(await api("GET", "health"))
    assert report["sandbox"]["mode"] in ("bwrap", "unshare", "none")
    assert report["sandbox"]["limits"] in ("prlimit", "launcher")
    assert report["queue"] == {"running": 0, "queued": 0, "max_concurrent": 2}


async def test_a_run_that_fails_on_its_errors_is_one_notification(api: Fetch) -> None:
    """Errors a run ends on are told in its failure (test_run_notifications.py: the rule)."""
    source = "import sys\nfor i in range(8):\n    print(f'error {i}')\nsys.exit(3)\n"
    sid = await script_id(api, "test_errors.py", source)
    run = await start_run(api, sid)
    done = await wait_for(api, run["id"])
    assert (done["status"], done["exit_code"], done["error_count"]) == ("failed", 3, 8)
    notes = body(await api("GET", "notifications"))["items"]
    assert [n["type"] for n in notes if n["type"] == "run_error"] == []
    failed = [n for n in notes if n["type"] == "run_failed"]
    assert len(failed) == 1 and failed[0]["entity_id"] == run["id"]
    assert failed[0]["message"] == "exit code 3: error 7; 7 more errors (see the run's log)"
    errors_only = body(await api("GET", f"runs/{run['id']}/logs", params={"level": "error"}))
    assert len(errors_only["items"]) == 8
