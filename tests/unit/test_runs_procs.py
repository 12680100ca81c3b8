"""Process backends over real processes, each test on both: ``linux`` (/proc, pidfd) and
``portable`` (psutil, the code macOS and Windows run), forced here on Linux."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from energyops_ext.config import EnergyOps, Settings
from energyops_ext.runs import registry
from energyops_ext.runs.procs import ProcessBackend, ProcRef, process_backend, winjob
from energyops_ext.runs.runner import RunProcess, signal_exit, terminate_tree
from energyops_ext.runs.sandbox import (
    RunPaths,
    build_command,
    portable_info,
    probe,
    run_environment,
)

BACKENDS = ["linux", "portable"]

# A child, and a grandchild that leaves the session (setsid) and is re-parented when its
# parent exits; both write their pid to the file in argv[1], then sleep.
FAMILY = """
import os, subprocess, sys, time
out = sys.argv[1]
def note(pid):
    with open(out, "a") as fh:
        fh.write(f"{pid}\\n")
note(os.getpid())
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
note(child.pid)
if os.fork() == 0:
    os.setsid()
    note(os.getpid())
    time.sleep(60)
    os._exit(0)
time.sleep(0.3)
print("family ready", flush=True)
if sys.argv[2:] == ["exit"]:
    sys.exit(0)
time.sleep(60)
"""


@pytest.fixture(params=BACKENDS)
def procs(request: pytest.FixtureRequest) -> ProcessBackend:
    return process_backend(request.param)


class Lines:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def add(self, stream: str, texts: list[str]) -> None:
        self.lines.extend((stream, text) for text in texts)


def marker_env(tmp_path: Path) -> tuple[bytes, dict[str, str]]:
    env = {"ENERGYOPS_OUTPUT_DIR": str(tmp_path), "PATH": os.environ["PATH"]}
    return f"ENERGYOPS_OUTPUT_DIR={tmp_path}\0".encode(), env


def run_process(
    argv: list[str],
    tmp_path: Path,
    procs: ProcessBackend,
    lines: Lines | None = None,
    *,
    wrapped: bool = False,
) -> RunProcess:
    """A run of ``argv`` in ``tmp_path``, marked by its output dir, with a 0.5 s kill grace."""
    marker, env = marker_env(tmp_path)
    return RunProcess(
        argv,
        env,
        tmp_path,
        marker,
        lines or Lines(),
        kill_grace_s=0.5,
        procs=procs,
        wrapped=wrapped,
    )


def alive(pids: list[int]) -> list[int]:
    """Which of ``pids`` live, read from /proc (the ground truth, whatever the backend)."""
    return [pid for pid in pids if registry.is_alive(pid)]


def wait_for_pids(path: Path, count: int) -> list[int]:
    deadline = time.monotonic() + 10
    while True:
        pids = [int(p) for p in path.read_text().split()] if path.exists() else []
        if len(pids) >= count:
            return pids
        assert time.monotonic() < deadline, pids
        time.sleep(0.02)


@pytest.fixture
def family(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], list[int], bytes]]:
    """A running family with the run marker, outside any run: (root, its 3 pids, marker)."""
    marker, env = marker_env(tmp_path)
    pid_file = tmp_path / "pids"
    root = subprocess.Popen(
        [sys.executable, "-c", FAMILY, str(pid_file)], env=env, start_new_session=True
    )
    pids = wait_for_pids(pid_file, 3)
    yield root, pids, marker
    for pid in alive(pids):
        os.kill(pid, signal.SIGKILL)
    root.wait()


def test_auto_is_linux_here_and_names_are_checked() -> None:
    assert process_backend().name == "linux"
    assert process_backend("Portable").name == "portable"
    assert process_backend("portable") is process_backend("portable")  # chosen once
    with pytest.raises(ValueError, match="process_backend must be one of auto, linux"):
        process_backend("windows")
    assert EnergyOps(process_backend="PORTABLE").to_settings().process_backend == "portable"


def test_without_pidfd_auto_is_portable_and_nothing_linux_is_imported() -> None:
    """A Python without os.pidfd_open (an old kernel, macOS, Windows) starts the services on
    the portable backend; the linux backend's module is never imported."""
    code = (
        "import os, sys\n"
        "del os.pidfd_open\n"
        "from energyops_ext.runs.procs import linux_unavailable, process_backend\n"
        "import energyops_ext.services, energyops_ext.runs.engine, energyops_ext.cluster.node\n"
        "print(process_backend().name, linux_unavailable())\n"
        "print('energyops_ext.runs.procs.linux' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == [
        "portable os.pidfd_open is missing (Linux 5.3 or later is needed)",
        "False",
    ]


def test_identity_is_pid_and_start_time(procs: ProcessBackend, tmp_path: Path) -> None:
    marker, env = marker_env(tmp_path)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env=env)
    try:
        started = procs.start_time(child.pid)
        assert started is not None and procs.is_alive(child.pid, started)
        assert procs.is_alive(child.pid)
        assert not procs.is_alive(child.pid, started + 1)  # same pid, another process
        # Popen returns once exec has begun; the kernel fills /proc/<pid>/environ a moment later
        deadline = time.monotonic() + 5
        while not (found := procs.run_processes(None, marker)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert {ref.pid for ref in found} == {child.pid}
        assert procs.boot_id() and procs.boot_id() == procs.boot_id()
    finally:
        child.kill()
        child.wait()
    assert not procs.is_alive(child.pid) and procs.start_time(child.pid) is None


def test_a_zombie_is_not_alive(procs: ProcessBackend) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while registry.read_stat(child.pid) is not None and registry.is_alive(child.pid):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert registry.read_stat(child.pid) is not None  # exited, not reaped: a zombie
    assert not procs.is_alive(child.pid)
    child.wait()


def test_the_run_tree_holds_children_and_setsid_escapees(
    procs: ProcessBackend, family: tuple[subprocess.Popen[bytes], list[int], bytes]
) -> None:
    root, pids, marker = family
    assert {ref.pid for ref in procs.run_processes(root.pid, marker)} == set(pids)
    assert terminate_tree(procs, root.pid, marker, grace_s=0.5) == 3
    assert alive(pids) == []


def test_after_the_exit_the_marker_finds_the_escapee(procs: ProcessBackend, tmp_path: Path) -> None:
    """The main process exited (a zombie until the runner waits): its child was re-parented
    but stays in the group; the escapee left the group too, only its environment names it."""
    marker, env = marker_env(tmp_path)
    pid_file = tmp_path / "pids"
    root = subprocess.Popen(
        [sys.executable, "-c", FAMILY, str(pid_file), "exit"], env=env, start_new_session=True
    )
    try:
        pids = wait_for_pids(pid_file, 3)
        deadline = time.monotonic() + 10
        while registry.is_alive(root.pid):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        no_marker = b"ENERGYOPS_OUTPUT_DIR=/nowhere\0"
        assert {ref.pid for ref in procs.run_processes(root.pid, no_marker)} == {pids[1]}
        assert {ref.pid for ref in procs.run_processes(None, marker)} == set(pids[1:])
        assert terminate_tree(procs, root.pid, marker, grace_s=0.5) == 2
        assert alive(pids) == []
    finally:
        for pid in alive(pids):
            os.kill(pid, signal.SIGKILL)
        root.wait()


def test_a_recycled_pid_is_never_signalled(
    procs: ProcessBackend, family: tuple[subprocess.Popen[bytes], list[int], bytes]
) -> None:
    root = family[0]
    start = procs.start_time(root.pid)
    assert start is not None
    # the pid as recorded of an earlier process with that pid: another start time
    procs.signal({ProcRef(root.pid, start - 1)}, "kill")
    time.sleep(0.1)
    assert alive([root.pid]) == [root.pid]
    procs.signal({ProcRef(root.pid, start)}, "kill")
    root.wait(5)
    assert root.returncode == -signal.SIGKILL


async def test_the_exit_ends_a_run_whose_grandchild_holds_the_pipes(
    procs: ProcessBackend, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pids"
    lines = Lines()
    run = run_process(
        [sys.executable, "-u", "-c", FAMILY, str(pid_file), "exit"], tmp_path, procs, lines
    )
    run.start()
    assert run.start_time == procs.start_time(run.pid or 0)
    began = time.monotonic()
    outcome = await run.finish(timeout_s=30)
    assert outcome.reason == "exit" and outcome.exit_code == 0
    assert time.monotonic() - began < 5  # not the 60 s the leftovers would hold the pipes
    assert lines.lines == [("stdout", "family ready")]
    assert alive(wait_for_pids(pid_file, 3)) == []


async def test_a_kill_reaches_the_whole_family_and_the_exit_watch_does_not_reap(
    procs: ProcessBackend, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pids"
    run = run_process([sys.executable, "-u", "-c", FAMILY, str(pid_file)], tmp_path, procs)
    await asyncio.to_thread(run.start)
    pids = await asyncio.to_thread(wait_for_pids, pid_file, 3)
    run.request_kill()
    outcome = await run.finish(timeout_s=30)
    assert outcome.reason == "killed" and outcome.exit_code == -signal.SIGTERM
    assert alive(pids) == []


@pytest.mark.parametrize(("wrapped", "code"), [(True, -signal.SIGKILL), (False, 128 + 9)])
async def test_a_wrappers_exit_for_a_killed_child_reads_as_the_signal(
    procs: ProcessBackend, tmp_path: Path, wrapped: bool, code: int
) -> None:
    # the outer shell exits as bubblewrap does when its child dies of SIGKILL: 128 + 9
    run = run_process(["sh", "-c", "sh -c 'kill -9 $$'; exit $?"], tmp_path, procs, wrapped=wrapped)
    await asyncio.to_thread(run.start)
    outcome = await run.finish(timeout_s=30)
    assert (outcome.reason, outcome.exit_code) == ("exit", code)
    assert [signal_exit(c) for c in (0, 1, 128, 129, 192, 193, 255)] == [
        0,
        1,
        128,
        -1,
        -64,
        193,
        255,
    ]


def test_the_windows_job_object_layout_and_refusal_elsewhere() -> None:
    # the sizes of the Windows x64 structures (LP64 Linux lays the fields out alike)
    assert ctypes.sizeof(winjob.JOBOBJECT_BASIC_LIMIT_INFORMATION) == 64
    assert ctypes.sizeof(winjob.IO_COUNTERS) == 48
    assert ctypes.sizeof(winjob.JOBOBJECT_EXTENDED_LIMIT_INFORMATION) == 144
    limits = winjob.kill_on_close_limits()
    assert limits.BasicLimitInformation.LimitFlags == 0x2000
    with pytest.raises(OSError, match="only on Windows"):
        winjob.JobObject()


@pytest.mark.parametrize(
    ("mode", "expected_mode", "fragment"),
    [
        ("auto", "none", "process_backend portable on linux: no bubblewrap, unshare or prlimit"),
        ("none", "none", "process_backend portable on linux"),
        ("bwrap", "unavailable", "sandbox_mode=bwrap needs process_backend linux"),
    ],
)
def test_the_portable_sandbox_says_none(
    tmp_path: Path, mode: str, expected_mode: str, fragment: str
) -> None:
    settings = Settings.for_data_dir(tmp_path, sandbox_mode=mode, process_backend="portable")
    info = probe(settings)
    assert info == portable_info(settings)
    assert (info.mode, info.processes, info.limits, info.bubblewrap) == (
        expected_mode,
        "portable",
        "launcher",
        False,
    )
    assert info.fallback_reason is not None and fragment in info.fallback_reason
    assert info.to_json()["processes"] == "portable"
    if expected_mode == "none":
        assert info.describe().startswith("isolation: new session, resource limits via launcher")
        paths = RunPaths.for_run(settings.sandbox_dir, 1)
        argv = build_command(info, settings, paths.root, paths.script, [])
        assert Path(argv[0]) == Path(sys.executable) and "bwrap" not in " ".join(argv)


def test_no_limits_where_python_has_no_resource_module(tmp_path: Path) -> None:
    settings = Settings.for_data_dir(tmp_path)
    info = portable_info(settings)
    windows = type(info)(**{**info.__dict__, "limits": "none"})
    paths = RunPaths.for_run(settings.sandbox_dir, 1)
    argv = build_command(windows, settings, paths.root, paths.script, ["a"])
    assert argv == [sys.executable, "-u", "-P", str(paths.script), "a"]
    assert "no resource limits" in windows.describe()


def test_a_limit_the_system_refuses_is_named_and_the_run_goes_on(tmp_path: Path) -> None:
    settings = Settings.for_data_dir(tmp_path, limit_open_files=10**9, limit_cpu_s=50)
    info = portable_info(settings)
    paths = RunPaths.for_run(settings.sandbox_dir, 1)
    paths.create()
    paths.script.write_text("import resource\nprint(resource.getrlimit(resource.RLIMIT_CPU))\n")
    done = subprocess.run(
        build_command(info, settings, paths.root, paths.script, []), capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.strip() == "(50, 50)"
    assert done.stderr.startswith("energyops: RLIMIT_NOFILE not set:")


def test_the_windows_and_macos_environments(tmp_path: Path) -> None:
    paths = RunPaths.for_run(tmp_path, 5)
    linux = run_environment(paths, 5, "SO", {}, platform="linux")
    assert "PYTHONUTF8" not in linux and "SYSTEMROOT" not in linux
    mac = run_environment(paths, 5, "SO", {}, platform="darwin")
    assert mac == {**linux, "PYTHONUTF8": "1"}
    win = run_environment(
        paths, 5, "SO", {}, platform="win32", server_env={"SYSTEMROOT": r"D:\Win", "SECRET": "x"}
    )
    assert set(win) - set(linux) == {"PYTHONUTF8", "SYSTEMROOT", "TEMP", "TMP", "USERPROFILE"}
    assert win["SYSTEMROOT"] == r"D:\Win" and "SECRET" not in win.values()
    assert win["PATH"].split(";")[-1] == r"D:\Win\System32" and "/usr/bin" not in win["PATH"]
    assert win["TEMP"] == win["TMP"] == win["TMPDIR"] == str(paths.tmp_dir)
