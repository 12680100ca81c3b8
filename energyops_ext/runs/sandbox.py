"""What a run may do: isolation layers probed once, resource limits, the clean environment.

A run is ``prlimit ... -- [bwrap ... --] python -u script.py args`` (or a tiny Python launcher
that sets the limits and execs when ``prlimit`` is missing). ``preexec_fn`` is never used: the
server is threaded.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Settings

log = logging.getLogger(__name__)

MB = 1024 * 1024
PROBE_TIMEOUT_S = 10.0
NOTEBOOK_RUNNER = "energyops_ext.runs.nbrun"
NOTEBOOK_OUTPUT = "notebook.ipynb"


@dataclass(frozen=True)
class SandboxInfo:
    """Which isolation layers work here and which one runs get."""

    configured: str  # auto | bwrap | none
    mode: str  # bwrap | unshare | none | unavailable
    bubblewrap: bool
    bubblewrap_error: str | None
    unshare: bool
    limits: str  # prlimit | launcher
    network: str  # isolated | allowed | open
    fallback_reason: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "configured": self.configured,
            "mode": self.mode,
            "bubblewrap": {"works": self.bubblewrap, "error": self.bubblewrap_error},
            "unshare": self.unshare,
            "limits": self.limits,
            "network": self.network,
            "fallback_reason": self.fallback_reason,
        }

    def describe(self) -> str:
        """The system line each run starts with."""
        if self.mode == "bwrap":
            where = "bubblewrap: read-only root, private /tmp, own pid namespace"
            net = ", network cut" if self.network == "isolated" else ", network allowed"
            return f"isolation: {where}{net}; limits via {self.limits}"
        if self.mode == "unshare":
            return (
                f"isolation: fallback to new session + network namespace (unshare); "
                f"limits via {self.limits} ({self.fallback_reason})"
            )
        reason = f" ({self.fallback_reason})" if self.fallback_reason else ""
        return f"isolation: new session, resource limits via {self.limits}, clean env{reason}"


def _try(cmd: list[str]) -> str | None:
    """None when ``cmd`` exits 0, else why not."""
    try:
        done = subprocess.run(
            cmd, capture_output=True, timeout=PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", "replace").strip()
        return err or f"exit code {done.returncode}"
    return None


def _python_paths_under_tmp() -> list[str]:
    """What the run's Python needs that a private /tmp would hide: the interpreter's prefixes,
    the import path and this package, when they live under /tmp (a checkout or venv there)."""
    package_root = Path(__file__).resolve().parents[2]
    candidates = {sys.prefix, sys.base_prefix, str(package_root), *sys.path}
    tmp = Path("/tmp")
    found = []
    for candidate in candidates:
        if not candidate:
            continue
        path = Path(candidate).resolve()
        if path.is_relative_to(tmp) and path != tmp and path.exists():
            found.append(str(path))
    # Parents first, and nothing already covered by a parent.
    found.sort(key=len)
    kept: list[str] = []
    for path_str in found:
        if not any(Path(path_str).is_relative_to(parent) for parent in kept):
            kept.append(path_str)
    return kept


def bwrap_prefix(run_dir: Path, *, allow_network: bool) -> list[str]:
    bwrap = shutil.which("bwrap") or "bwrap"
    run = str(run_dir)
    cmd = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    for path in _python_paths_under_tmp():
        cmd += ["--ro-bind", path, path]
    cmd += ["--bind", run, run, "--chdir", run]
    if not allow_network:
        cmd.append("--unshare-net")
    cmd += ["--unshare-pid", "--die-with-parent", "--new-session", "--"]
    return cmd


def probe(settings: Settings) -> SandboxInfo:
    """Try each layer once (blocking, at start)."""
    configured = settings.sandbox_mode
    limits = "prlimit" if shutil.which("prlimit") else "launcher"
    bwrap_error: str | None = "not probed (sandbox_mode=none)"
    works = False
    if configured != "none":
        if shutil.which("bwrap") is None:
            bwrap_error = "bwrap is not installed (Debian package bubblewrap)"
        else:
            with tempfile.TemporaryDirectory(prefix="energyops-probe-") as tmp:
                bwrap_error = _try([*bwrap_prefix(Path(tmp), allow_network=False), "true"])
            works = bwrap_error is None
    unshare_ok = shutil.which("unshare") is not None and _try(["unshare", "-n", "true"]) is None
    network = "allowed" if settings.allow_network else "isolated"
    if works:
        return SandboxInfo(configured, "bwrap", True, None, unshare_ok, limits, network, None)
    if configured == "bwrap":
        reason = f"sandbox_mode=bwrap but bubblewrap does not work here: {bwrap_error}"
        return SandboxInfo(
            configured, "unavailable", False, bwrap_error, unshare_ok, limits, network, reason
        )
    if configured == "none":
        return SandboxInfo(
            configured, "none", False, bwrap_error, unshare_ok, limits, "open", "sandbox_mode=none"
        )
    reason = f"bubblewrap does not work here: {bwrap_error}"
    if unshare_ok and not settings.allow_network:
        return SandboxInfo(configured, "unshare", False, bwrap_error, True, limits, network, reason)
    return SandboxInfo(configured, "none", False, bwrap_error, unshare_ok, limits, "open", reason)


def limit_values(settings: Settings) -> dict[str, int]:
    """RLIMIT name → value (bytes / seconds / count); 0 in settings means no limit."""
    values = {
        "AS": settings.limit_address_space_mb * MB,
        "CPU": settings.limit_cpu_s,
        "NOFILE": settings.limit_open_files,
        "FSIZE": settings.limit_file_size_mb * MB,
    }
    return {name: value for name, value in values.items() if value > 0}


_LAUNCHER = (
    "import os,resource,sys\n"
    "for n,v in zip(sys.argv[1].split(','),sys.argv[2].split(',')):\n"
    " n and resource.setrlimit(getattr(resource,'RLIMIT_'+n),(int(v),int(v)))\n"
    "os.execv(sys.argv[3],sys.argv[3:])\n"
)


def limits_prefix(settings: Settings, method: str) -> list[str]:
    values = limit_values(settings)
    if method == "prlimit":
        prlimit = shutil.which("prlimit") or "prlimit"
        return [prlimit, *(f"--{name.lower()}={value}" for name, value in values.items()), "--"]
    names = ",".join(values)
    numbers = ",".join(str(v) for v in values.values())
    return [sys.executable, "-S", "-c", _LAUNCHER, names, numbers]


def build_command(
    info: SandboxInfo,
    settings: Settings,
    run_dir: Path,
    script: Path,
    args: list[str],
    *,
    notebook_output: Path | None = None,
) -> list[str]:
    """The argv of a run: limits, then isolation, then the script with its arguments, or
    for a notebook (``notebook_output`` given) the notebook runner, which executes it with
    papermill in the same sandbox."""
    if notebook_output is not None:
        python = [sys.executable, "-u", "-m", NOTEBOOK_RUNNER, str(script), str(notebook_output)]
    else:
        # -P: the run directory is not on the import path, so a script named like a module
        # it imports (csv.py) does not shadow it
        python = [sys.executable, "-u", "-P", str(script), *args]
    isolation: list[str] = []
    if info.mode == "bwrap":
        isolation = bwrap_prefix(run_dir, allow_network=settings.allow_network)
    elif info.mode == "unshare":
        isolation = [shutil.which("unshare") or "unshare", "-n", "--"]
    prefix = limits_prefix(settings, info.limits)
    if info.limits == "launcher":
        # the launcher execs argv[3:]: the executable must be a path
        target = [*isolation, *python]
        target[0] = shutil.which(target[0]) or target[0]
        return [*prefix, *target]
    return [*prefix, *isolation, *python]


@dataclass(frozen=True)
class RunPaths:
    root: Path
    script: Path
    input_dir: Path
    output_dir: Path
    tmp_dir: Path

    @classmethod
    def for_run(cls, sandbox_dir: Path, run_id: int) -> RunPaths:
        return cls.for_dir(sandbox_dir / str(run_id))

    @classmethod
    def for_dir(cls, root: Path) -> RunPaths:
        return cls(root, root / "script.py", root / "input", root / "output", root / "tmp")

    def named_script(self, name: str) -> Path:
        """Where a .py run's script is written: under its own file name, which its tracebacks
        then show; ``script.py`` for a name that is no plain .py file name."""
        plain = (
            name.endswith(".py")
            and name == Path(name).name
            and "\x00" not in name
            and len(name.encode("utf-8", "replace")) <= 255
        )
        return self.root / name if plain else self.script

    @property
    def notebook(self) -> Path:
        """Where a notebook run's uploaded notebook is written (the script of a .py run)."""
        return self.root / "notebook.ipynb"

    def create(self) -> None:
        for path in (self.root, self.input_dir, self.output_dir, self.tmp_dir):
            path.mkdir(parents=True, exist_ok=True)


def run_environment(
    paths: RunPaths,
    run_id: int,
    model_type: str | None,
    config: dict[str, Any],
    parameters: dict[str, Any] | None = None,
) -> dict[str, str]:
    """The whole environment of a run: nothing of the server's is inherited."""
    config_json = json.dumps(config, separators=(",", ":"))
    parameters_json = json.dumps(parameters or {}, separators=(",", ":"))
    python_bin = str(Path(sys.executable).parent)
    return {
        "PATH": f"{python_bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(paths.root),
        "TMPDIR": str(paths.tmp_dir),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "ENERGYOPS_RUN_ID": str(run_id),
        "ENERGYOPS_MODEL_TYPE": model_type or "",
        "ENERGYOPS_CONFIG": config_json,
        "ENERGYOPS_PARAMETERS": parameters_json,
        "ENERGYOPS_INPUT_DIR": str(paths.input_dir),
        "ENERGYOPS_OUTPUT_DIR": str(paths.output_dir),
        "JOB_ID": str(run_id),
        "MODEL_TYPE": model_type or "",
        "CONFIG": config_json,
    }


def process_marker(paths: RunPaths) -> bytes:
    """Bytes in /proc/<pid>/environ of every process of this run (children inherit them)."""
    return f"ENERGYOPS_OUTPUT_DIR={paths.output_dir}\0".encode()
