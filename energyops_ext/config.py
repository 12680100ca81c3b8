"""Configuration: traitlets with help= (``jupyter energyops --help-all`` lists them).

Precedence: command line > ``jupyter_energyops_config.py`` > environment
(``ENERGYOPS_DATA_DIR``, ``ENERGYOPS_DB_URL``) > defaults. Services receive a plain, frozen
``Settings`` so they never depend on traitlets.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from traitlets import (
    Bool,
    CaselessStrEnum,
    Dict,
    Float,
    Integer,
    List,
    TraitError,
    Unicode,
    default,
    validate,
)
from traitlets.config import Configurable

MB = 1_000_000


def default_data_dir() -> Path:
    env = os.environ.get("ENERGYOPS_DATA_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return Path.home() / ".local" / "share" / "energyops"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    db_url: str
    sandbox_dir: Path
    logs_dir: Path
    files_dir: Path
    max_upload_bytes: int = 50 * MB
    max_unpacked_bytes: int = 500 * MB
    max_test_script_bytes: int = 5 * MB
    max_model_bytes: int = 10 * MB
    enforce_test_script_names: bool = True
    max_concurrent_runs: int = 2
    run_timeout_s: int = 600
    max_run_timeout_s: int = 7 * 24 * 3600
    kill_grace_s: float = 5.0
    heartbeat_s: float = 5.0
    lease_s: float = 30.0
    poll_s: float = 0.5
    log_flush_interval_s: float = 0.05
    schedule_poll_s: float = 1.0
    schedule_timezone: str = "Asia/Kolkata"
    display_timezone: str = "Asia/Kolkata"
    schedule_max_lateness_s: int = 300
    deadline_warnings_min: list[float] = dataclasses.field(
        default_factory=lambda: [30.0, 10.0], hash=False
    )
    kpi_interval_s: float = 30.0
    health_interval_s: float = 15.0
    ws_queue_frames: int = 256
    ws_ping_interval_s: float = 20.0
    sandbox_mode: str = "auto"
    process_backend: str = "auto"
    allow_network: bool = False
    limit_address_space_mb: int = 4096
    limit_cpu_s: int = 3600
    limit_open_files: int = 1024
    limit_file_size_mb: int = 1024
    executor: str = "local"
    dask_scheduler: str = ""
    dask_resources: dict[str, dict[str, float]] = dataclasses.field(
        default_factory=dict, hash=False
    )
    storage_url: str = ""
    # hash=False keeps Settings hashable.
    storage_options: dict[str, Any] = dataclasses.field(default_factory=dict, hash=False)
    notification_urls: list[str] = dataclasses.field(default_factory=list, hash=False)
    alert_interval_s: float = 60.0
    delivery_attempts: int = 4
    delivery_backoff_s: float = 30.0
    delivery_timeout_s: float = 30.0

    @classmethod
    def for_data_dir(cls, data_dir: Path, **overrides: object) -> Settings:
        """Settings with every path under one data directory (tests, CLI tools)."""
        data_dir = data_dir.resolve()
        base: dict[str, object] = {
            "data_dir": data_dir,
            "db_url": f"sqlite:///{data_dir / 'energyops.db'}",
            "sandbox_dir": data_dir / "sandbox",
            "logs_dir": data_dir / "logs",
            "files_dir": data_dir / "files",
        }
        base.update(overrides)
        return cls(**base)  # type: ignore[arg-type]


class EnergyOps(Configurable):
    """EnergyOps settings, section ``EnergyOps`` (``c.EnergyOps.db_url = ...``)."""

    data_dir = Unicode(
        help="Directory for the SQLite database, uploaded files, run directories and logs. "
        "Defaults to $ENERGYOPS_DATA_DIR, else ~/.local/share/energyops "
        "(`jupyter energyops up` uses ./.energyops).",
    ).tag(config=True)

    db_url = Unicode(
        help="SQLAlchemy database URL. Defaults to $ENERGYOPS_DB_URL, else SQLite in data_dir. "
        "PostgreSQL: postgresql:///energyops (psycopg 3).",
    ).tag(config=True)

    sandbox_dir = Unicode(help="Run working directories; default <data_dir>/sandbox.").tag(
        config=True
    )
    logs_dir = Unicode(help="Run log files; default <data_dir>/logs.").tag(config=True)
    executor = CaselessStrEnum(
        ["local", "dask"],
        default_value="local",
        help="Where runs execute: 'local' (a sandboxed subprocess of this server) or 'dask' "
        "(the same sandboxed subprocess inside a task on a Dask worker; see dask_scheduler).",
    ).tag(config=True)
    dask_scheduler = Unicode(
        help="Address of the Dask scheduler for executor='dask', e.g. tcp://127.0.0.1:8786. "
        "Defaults to $ENERGYOPS_DASK_SCHEDULER.",
    ).tag(config=True)
    dask_resources = Dict(
        help="Dask worker resources a run needs, by model type, e.g. "
        "{'DMO': {'MEMORY': 8e9}, 'SO': {'GPU': 1}} (workers started with --resources).",
    ).tag(config=True)
    storage_url = Unicode(
        help="Where scripts, uploads, inputs, artifacts and finished logs are kept, shared by "
        "every server: '' (default: <data_dir>/files), a path or file:///shared/dir, or "
        "s3://bucket/prefix (s3fs; any fsspec URL works). Defaults to $ENERGYOPS_STORAGE_URL. "
        "No credentials here: use storage_options or the AWS_* environment variables.",
    ).tag(config=True)
    storage_options = Dict(
        help="Options of the storage_url filesystem (fsspec/s3fs keyword arguments), e.g. "
        "{'client_kwargs': {'endpoint_url': 'http://minio:9000'}, 'key': ..., 'secret': ...}.",
    ).tag(config=True)

    max_upload_bytes = Integer(50 * MB, help="Largest dataset upload, in bytes.").tag(config=True)
    max_unpacked_bytes = Integer(
        500 * MB, help="Largest total unpacked size of an xlsx archive, in bytes (zip bombs)."
    ).tag(config=True)
    max_test_script_bytes = Integer(5 * MB, help="Largest test script, in bytes.").tag(config=True)
    max_model_bytes = Integer(10 * MB, help="Largest optimization model, in bytes.").tag(
        config=True
    )
    enforce_test_script_names = Bool(
        True, help="Require test scripts to be named test_*.py or experiment_*.py."
    ).tag(config=True)

    max_concurrent_runs = Integer(2, help="Runs executing at once; the rest wait queued.").tag(
        config=True
    )
    run_timeout_s = Integer(600, help="Default run timeout in seconds.").tag(config=True)
    max_run_timeout_s = Integer(
        7 * 24 * 3600, help="Largest timeout_s a run may ask for, in seconds."
    ).tag(config=True)
    kill_grace_s = Float(5.0, help="Seconds between SIGTERM and SIGKILL on kill or timeout.").tag(
        config=True
    )
    heartbeat_s = Float(
        5.0,
        help="Seconds between heartbeats of this server (and its runs) in the shared database; "
        "each heartbeat also reaps the runs of dead servers.",
    ).tag(config=True)
    lease_s = Float(
        30.0,
        help="A server without a heartbeat for this many seconds is dead and its runs are "
        "reaped (at once when it was on this machine and its process is gone).",
    ).tag(config=True)
    poll_s = Float(
        0.5,
        help="Seconds between looks at the shared queue, kill requests and (SQLite) events of "
        "other servers; PostgreSQL notifications wake a server sooner.",
    ).tag(config=True)
    log_flush_interval_s = Float(
        0.05,
        help="Longest time a log line waits before it is written to the database (where "
        "subscribers on other servers read it).",
    ).tag(config=True)
    schedule_poll_s = Float(
        1.0,
        help="Seconds between looks at the schedules (due slots), run deadlines and retries; "
        "a server also wakes at the next known slot. 0 turns the background tick off.",
    ).tag(config=True)
    schedule_timezone = Unicode(
        "Asia/Kolkata",
        help="Time zone of a schedule that names none, and in which deadlines are shown.",
    ).tag(config=True)
    display_timezone = Unicode(
        "Asia/Kolkata",
        help="IANA time zone in which the dashboards and panels show times (to the minute); "
        "the API keeps UTC. The widgets learn it from GET /health.",
    ).tag(config=True)
    schedule_max_lateness_s = Integer(
        300,
        help="Default of a schedule's missed.max_lateness_s: after a downtime, the latest "
        "missed slot still runs if it is at most this many seconds late.",
    ).tag(config=True)
    deadline_warnings_min = List(
        Float(),
        default_value=[30.0, 10.0],
        help="Minutes before a run's deadline_at at which a warning goes out while it has "
        "not succeeded.",
    ).tag(config=True)
    kpi_interval_s = Float(30.0, help="Seconds between kpi.update pushes.").tag(config=True)
    health_interval_s = Float(15.0, help="Seconds between health.update pushes.").tag(config=True)
    ws_queue_frames = Integer(
        256, help="Frames a WebSocket subscriber may fall behind before it is closed (1013)."
    ).tag(config=True)
    ws_ping_interval_s = Float(20.0, help="WebSocket heartbeat interval in seconds.").tag(
        config=True
    )
    notification_urls = List(
        Unicode(),
        help="Apprise URLs that get every notification (mailto://..., slack://..., "
        "msteams://..., json://host/path, ...); rules, runs and schedules add their own "
        "channels. Sent off the event loop by any server, with retries.",
    ).tag(config=True)
    alert_interval_s = Float(
        60.0,
        help="Seconds between evaluations of the alert rules on a timer (uploads of market "
        "data evaluate them at once).",
    ).tag(config=True)
    delivery_attempts = Integer(
        4, help="Attempts to deliver a notification to one channel before it is failed."
    ).tag(config=True)
    delivery_backoff_s = Float(
        30.0,
        help="Seconds before the second attempt of a delivery; each later wait doubles.",
    ).tag(config=True)
    delivery_timeout_s = Float(
        30.0, help="Longest time one delivery attempt may take, in seconds."
    ).tag(config=True)

    sandbox_mode = CaselessStrEnum(
        ["auto", "bwrap", "none"],
        default_value="auto",
        help="Run isolation: 'auto' uses bubblewrap when it works here, 'bwrap' requires it, "
        "'none' uses only a new session, resource limits and a clean environment.",
    ).tag(config=True)
    process_backend = CaselessStrEnum(
        ["auto", "linux", "portable"],
        default_value="auto",
        help="How run processes are identified, watched and killed, chosen once at start: "
        "'linux' (/proc, pidfd, process groups; needed for bubblewrap, unshare and prlimit), "
        "'portable' (psutil and environment markers; a Job Object on Windows; sandbox mode "
        "none), 'auto' (linux where it works, else portable: macOS, Windows).",
    ).tag(config=True)
    allow_network = Bool(False, help="Let runs use the network (bubblewrap only).").tag(config=True)
    limit_address_space_mb = Integer(4096, help="RLIMIT_AS of a run, in MB (0: none).").tag(
        config=True
    )
    limit_cpu_s = Integer(3600, help="RLIMIT_CPU of a run, in seconds (0: none).").tag(config=True)
    limit_open_files = Integer(1024, help="RLIMIT_NOFILE of a run (0: none).").tag(config=True)
    limit_file_size_mb = Integer(1024, help="RLIMIT_FSIZE of a run, in MB (0: none).").tag(
        config=True
    )

    @validate("display_timezone")
    def _known_zone(self, proposal: Any) -> str:
        name = str(proposal["value"]).strip()
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise TraitError(f"{name!r} is not a known IANA time zone") from None
        return name

    @default("data_dir")
    def _default_data_dir(self) -> str:
        return str(default_data_dir())

    @default("dask_scheduler")
    def _default_dask_scheduler(self) -> str:
        return os.environ.get("ENERGYOPS_DASK_SCHEDULER") or ""

    @default("db_url")
    def _default_db_url(self) -> str:
        return os.environ.get("ENERGYOPS_DB_URL") or ""

    @default("storage_url")
    def _default_storage_url(self) -> str:
        return os.environ.get("ENERGYOPS_STORAGE_URL") or ""

    def to_settings(self) -> Settings:
        data_dir = Path(self.data_dir).expanduser().resolve()
        values: dict[str, object] = {
            "data_dir": data_dir,
            "db_url": self.db_url or f"sqlite:///{data_dir / 'energyops.db'}",
            "sandbox_dir": Path(self.sandbox_dir).resolve()
            if self.sandbox_dir
            else data_dir / "sandbox",
            "logs_dir": Path(self.logs_dir).resolve() if self.logs_dir else data_dir / "logs",
            "files_dir": data_dir / "files",
        }
        for field in fields(Settings):
            if field.name not in values:
                values[field.name] = getattr(self, field.name)
        return Settings(**values)  # type: ignore[arg-type]
