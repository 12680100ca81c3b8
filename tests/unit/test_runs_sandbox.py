"""Sandbox commands and environment, process identity, run requests, cleanup ages."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from energyops_ext.config import Settings
from energyops_ext.errors import Invalid
from energyops_ext.runs import registry
from energyops_ext.runs.cli import parse_age
from energyops_ext.runs.inputs import InputSpec, input_file_names, parse_run_request
from energyops_ext.runs.sandbox import (
    RunPaths,
    SandboxInfo,
    build_command,
    limit_values,
    run_environment,
)


def info(mode: str, limits: str = "prlimit") -> SandboxInfo:
    return SandboxInfo("auto", mode, mode == "bwrap", None, True, limits, "isolated", None)


def test_bwrap_command_has_limits_isolation_and_the_script(tmp_path: Path) -> None:
    settings = Settings.for_data_dir(tmp_path)
    paths = RunPaths.for_run(settings.sandbox_dir, 3)
    argv = build_command(info("bwrap"), settings, paths.root, paths.script, ["--x"])
    assert Path(argv[0]).name == "prlimit"
    assert "--as=4294967296" in argv and "--nofile=1024" in argv
    bwrap = argv.index("--") + 1
    assert Path(argv[bwrap]).name == "bwrap"
    for flag in ("--unshare-net", "--unshare-pid", "--die-with-parent", "--new-session"):
        assert flag in argv
    assert argv[-5:] == [sys.executable, "-u", "-P", str(paths.script), "--x"]
    open_net = build_command(
        info("bwrap"),
        Settings.for_data_dir(tmp_path, allow_network=True),
        paths.root,
        paths.script,
        [],
    )
    assert "--unshare-net" not in open_net


@pytest.mark.parametrize(
    ("name", "file"),
    [
        ("dmo.py", "dmo.py"),
        ("test day-ahead v2.py", "test day-ahead v2.py"),
        ("csv.py", "csv.py"),  # -P keeps it from shadowing the module
        ("notes.txt", "script.py"),
        ("a/b.py", "script.py"),
        ("nul\x00.py", "script.py"),
        ("é" * 130 + ".py", "script.py"),  # longer than a file name may be, in bytes
    ],
)
def test_a_script_is_written_under_its_own_name(tmp_path: Path, name: str, file: str) -> None:
    paths = RunPaths.for_run(tmp_path, 6)
    assert paths.named_script(name) == tmp_path / "6" / file


def test_python_launcher_sets_limits_then_execs(tmp_path: Path) -> None:
    settings = Settings.for_data_dir(tmp_path, limit_open_files=77, limit_cpu_s=0)
    assert "CPU" not in limit_values(settings)
    paths = RunPaths.for_run(settings.sandbox_dir, 1)
    paths.create()
    paths.script.write_text("import resource\nprint(resource.getrlimit(resource.RLIMIT_NOFILE))\n")
    argv = build_command(info("none", "launcher"), settings, paths.root, paths.script, [])
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "(77, 77)"


def test_environment_is_exactly_the_contract(tmp_path: Path) -> None:
    paths = RunPaths.for_run(tmp_path, 5)
    env = run_environment(paths, 5, "SO", {"a": 1})
    assert set(env) == {
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
    }
    assert env["TMPDIR"].startswith(str(paths.root)) and env["HOME"] == str(paths.root)
    assert env["CONFIG"] == env["ENERGYOPS_CONFIG"] == '{"a":1}'
    assert env["JOB_ID"] == env["ENERGYOPS_RUN_ID"] == "5"
    assert env["ENERGYOPS_PARAMETERS"] == "{}"
    with_values = run_environment(paths, 5, "SO", {}, {"mode": "lp", "capacity_mw": 50.0})
    assert with_values["ENERGYOPS_PARAMETERS"] == '{"mode":"lp","capacity_mw":50.0}'


def test_process_identity_and_marker_scan(tmp_path: Path) -> None:
    marker = f"ENERGYOPS_OUTPUT_DIR={tmp_path}\0".encode()
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"],
        env={"ENERGYOPS_OUTPUT_DIR": str(tmp_path), "PATH": os.environ["PATH"]},
    )
    try:
        started = registry.start_time(child.pid)
        assert started is not None and registry.is_alive(child.pid, started)
        assert not registry.is_alive(child.pid, started + 1)
        assert registry.with_marker(marker) == {child.pid}
        assert child.pid in registry.descendants(os.getpid())
        assert registry.boot_id() and registry.host_name()
    finally:
        child.kill()
        child.wait()
    assert not registry.is_alive(child.pid)


def test_run_request_defaults_and_inputs(tmp_path: Path) -> None:
    settings = Settings.for_data_dir(tmp_path)
    request = parse_run_request({}, settings)
    assert (request.args, request.config, request.timeout_s, request.priority) == ([], {}, 600, 0)
    body: dict[str, Any] = {
        "inputs": [
            {"kind": "market-bids", "from": "2025-01-01", "to": "2025-01-02"},
            {"kind": "market-bids", "from": "2025-02-01", "to": "2025-02-02"},
        ]
    }
    specs = parse_run_request(body, settings).inputs
    assert specs[0] == InputSpec("market-bids", date(2025, 1, 1), date(2025, 1, 2))
    assert input_file_names(specs) == ["market-bids.csv", "market-bids-2.csv"]
    with pytest.raises(Invalid) as err:
        parse_run_request({"timeout_s": True}, settings)
    assert err.value.details == {"field": "timeout_s"}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("7d", 7 * 86400), ("12h", 43200), ("30m", 1800), ("90", 90), ("0s", 0), ("2w", 1209600)],
)
def test_parse_age(text: str, seconds: int) -> None:
    assert parse_age(text) == timedelta(seconds=seconds)


def test_parse_age_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="7d"):
        parse_age("soon")
