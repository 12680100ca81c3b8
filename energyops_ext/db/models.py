"""The data model of DESIGN.md as SQLAlchemy 2 typed models. Alembic owns the schema."""

from __future__ import annotations

from datetime import date as Date
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, UTCDateTime, utcnow

TZDateTime = UTCDateTime()


class Script(Base):
    """One uploaded version of a test script or an optimization model."""

    __tablename__ = "scripts"
    __table_args__ = (
        UniqueConstraint("name", "version"),
        Index("ix_scripts_kind_status", "kind", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # test | model
    model_type: Mapped[str | None] = mapped_column(String(8))  # DMO | RMO | SO
    name: Mapped[str] = mapped_column(String(255))
    version: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    storage_key: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | archived
    description: Mapped[str | None] = mapped_column(Text)
    uploaded_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    format: Mapped[str] = mapped_column(String(8), default="py")  # py | ipynb
    # declared parameters, read statically at upload (runs/parameters.py)
    parameters: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)

    runs: Mapped[list[Run]] = relationship(
        back_populates="script", cascade="all, delete-orphan", passive_deletes=True
    )


class Run(Base):
    """One execution of a script version."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_status_priority", "status", "priority", "created_at"),
        Index("ix_runs_script_id", "script_id"),
        Index("ix_runs_server_status", "server_id", "status"),
        # attempts of one chain: two servers can never both create attempt N (issue 13)
        Index("uq_runs_first_run_attempt", "first_run_id", "attempt", unique=True),
        Index("ix_runs_schedule_id", "schedule_id"),
        Index("ix_runs_deadline_at", "deadline_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    script_id: Mapped[int] = mapped_column(ForeignKey("scripts.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    args: Mapped[list[str]] = mapped_column(JSON, default=list)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    inputs: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    timeout_s: Mapped[int] = mapped_column(Integer, default=600)
    requested_by: Mapped[str | None] = mapped_column(String(255))
    host: Mapped[str | None] = mapped_column(String(255))
    boot_id: Mapped[str | None] = mapped_column(String(64))
    pid: Mapped[int | None] = mapped_column(Integer)
    pid_start_time: Mapped[int | None] = mapped_column(BigInteger)
    heartbeat_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    runtime_ms: Mapped[int | None] = mapped_column(Integer)
    line_count: Mapped[int] = mapped_column(Integer, default=0)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    progress: Mapped[float | None] = mapped_column(Float)
    objective_value: Mapped[float | None] = mapped_column(Float)
    results_count: Mapped[int | None] = mapped_column(Integer)
    solver_time_ms: Mapped[int | None] = mapped_column(Integer)
    status_reason: Mapped[str | None] = mapped_column(Text)
    log_key: Mapped[str | None] = mapped_column(String(255))
    # the server that owns the run while it runs (servers.id); never a host
    server_id: Mapped[str | None] = mapped_column(String(36))
    executor: Mapped[str] = mapped_column(String(16), default="local")
    worker: Mapped[str | None] = mapped_column(String(255))
    workdir: Mapped[str | None] = mapped_column(String(1024))  # on its owner's machine
    kill_requested_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    kill_requested_by: Mapped[str | None] = mapped_column(String(255))
    # attempts: the first has attempt 1 and first_run_id NULL, retries point at the first
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    first_run_id: Mapped[int | None] = mapped_column(Integer)
    schedule_id: Mapped[int | None] = mapped_column(Integer)
    deadline_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    deadline_missed: Mapped[bool] = mapped_column(Boolean, default=False)
    retry: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    channels: Mapped[list[str]] = mapped_column(JSON, default=list)
    not_before: Mapped[datetime | None] = mapped_column(TZDateTime)  # the queue waits till then
    retry_outcome: Mapped[str | None] = mapped_column(String(16))  # scheduled | exhausted | cut
    # typed parameters (None: the script's defaults, for runs created before they existed)
    parameters: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    stop_requested_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    stop_requested_by: Mapped[str | None] = mapped_column(String(255))
    stopped_early: Mapped[bool] = mapped_column(Boolean, default=False)
    input_hashes: Mapped[dict[str, str] | None] = mapped_column(JSON(none_as_null=True))
    solver: Mapped[dict[str, float] | None] = mapped_column(JSON(none_as_null=True))

    script: Mapped[Script] = relationship(back_populates="runs")


class Schedule(Base):
    """A script run on a cron in a time zone; each slot fires once across servers."""

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255))
    # a fixed version, or None and script_name: the latest active version at each fire
    script_id: Mapped[int | None] = mapped_column(ForeignKey("scripts.id", ondelete="CASCADE"))
    script_name: Mapped[str | None] = mapped_column(String(255))
    cron: Mapped[str] = mapped_column(String(255))
    timezone: Mapped[str] = mapped_column(String(64))
    args: Mapped[list[str]] = mapped_column(JSON, default=list)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    inputs: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # as given; checked against the version that fires (its declared parameters)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    timeout_s: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    deadline: Mapped[str | None] = mapped_column(String(16))  # HH:MM | +minutes
    retry: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    max_lateness_s: Mapped[int] = mapped_column(Integer)
    channels: Mapped[list[str]] = mapped_column(JSON, default=list)
    # slots after max(anchor_at, last_slot) are due: creation, resume and a new cron move it
    anchor_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    last_slot: Mapped[datetime | None] = mapped_column(TZDateTime)
    created_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)


class ScheduleFire(Base):
    """One slot of a schedule: fired (with its run), missed or skipped (with why). The
    unique (schedule_id, slot) row, written with the run, makes a slot fire once."""

    __tablename__ = "schedule_fires"
    __table_args__ = (UniqueConstraint("schedule_id", "slot"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    slot: Mapped[datetime] = mapped_column(TZDateTime)
    status: Mapped[str] = mapped_column(String(16))  # fired | missed | skipped
    reason: Mapped[str | None] = mapped_column(Text)
    server_id: Mapped[str | None] = mapped_column(String(36))
    fired_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))


class DeadlineNotice(Base):
    """A deadline warning or miss sent for an attempt chain (``run_id`` is its first run):
    the unique (run_id, kind) row makes each one go out once across servers."""

    __tablename__ = "deadline_notices"
    __table_args__ = (UniqueConstraint("run_id", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))  # warning:<minutes> | missed
    server_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)


class Server(Base):
    """One EnergyOps server process sharing this database; a new id at every start."""

    __tablename__ = "servers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    boot_id: Mapped[str] = mapped_column(String(64))
    pid: Mapped[int] = mapped_column(Integer)
    pid_start_time: Mapped[int | None] = mapped_column(BigInteger)
    version: Mapped[str] = mapped_column(String(32))
    executor: Mapped[str] = mapped_column(String(16))
    url: Mapped[str | None] = mapped_column(String(512))
    started_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    dead_reason: Mapped[str | None] = mapped_column(Text)


class ClusterEvent(Base):
    """An event one server published, for the others to poll (SQLite; PostgreSQL sends them
    with NOTIFY). SQLite commits one writer at a time, so ids appear in commit order."""

    __tablename__ = "cluster_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    server_id: Mapped[str] = mapped_column(String(36))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)


class LogChunk(Base):
    """Consecutive lines of a run's output, ``first_seq``..``last_seq``, in one row; ``seq``
    counts from 1 per run across both streams. The format is in ``runs/chunks.py``."""

    __tablename__ = "log_chunks"
    __table_args__ = (Index("ix_log_chunks_run_last_seq", "run_id", "last_seq", unique=True),)

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    first_seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_seq: Mapped[int] = mapped_column(Integer)
    kinds: Mapped[int] = mapped_column(Integer)  # a bit per (stream, level) pair present
    codes: Mapped[str] = mapped_column(Text)  # a letter per line: its stream and level
    stamps: Mapped[str] = mapped_column(Text)  # timestamps, run-length coded
    texts: Mapped[str] = mapped_column(Text)  # the texts joined by "\n"


class Upload(Base):
    """One dataset file upload and its row-level report."""

    __tablename__ = "uploads"
    __table_args__ = (Index("ix_uploads_kind_created", "kind", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str] = mapped_column(String(255))
    sheet: Mapped[str | None] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(16), default="upsert")
    rows_read: Mapped[int] = mapped_column(Integer, default=0)
    rows_inserted: Mapped[int] = mapped_column(Integer, default=0)
    rows_updated: Mapped[int] = mapped_column(Integer, default=0)
    rows_rejected: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16))  # stored | partial | rejected | failed
    report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    uploaded_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)


class Activity(Base):
    __tablename__ = "activities"
    __table_args__ = (Index("ix_activities_created", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    type: Mapped[str] = mapped_column(String(32))  # script | run | upload | system
    action: Mapped[str] = mapped_column(String(32))  # uploaded | started | killed | ...
    title: Mapped[str] = mapped_column(Text)
    entity_type: Mapped[str | None] = mapped_column(String(32))
    entity_id: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str | None] = mapped_column(String(16))
    user: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_created", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    type: Mapped[str] = mapped_column(String(32))  # run_failed | run_errors | upload_rejected ...
    category: Mapped[str] = mapped_column(String(32))  # run | upload | system
    severity: Mapped[str] = mapped_column(String(16))  # info | warning | error
    title: Mapped[str] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)
    entity_type: Mapped[str | None] = mapped_column(String(32))
    entity_id: Mapped[int | None] = mapped_column(Integer)
    is_read: Mapped[bool] = mapped_column(Boolean, default=False)
    is_archived: Mapped[bool] = mapped_column(Boolean, default=False)
    user: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)


# --- datasets (DATA.md). Key columns are NOT NULL (empty string for "none") so upserts work. ---


def _keyed_by(*key: str) -> tuple[Any, ...]:
    """A dataset row is identified by its key (see migration 0009): the key is the primary
    key, and on SQLite the table is stored in key order (``WITHOUT ROWID``)."""
    return (PrimaryKeyConstraint(*key), {"sqlite_with_rowid": False})


def _upload_ref() -> Mapped[int | None]:
    """The upload a row came from. No foreign key: see migration 0008 (the upload is written
    in the row's transaction and never deleted; a per-row check cost bulk writes dearly)."""
    return mapped_column(Integer)


class MarketSnapshot(Base):
    __tablename__ = "market_snapshot"
    __table_args__ = _keyed_by("date", "block", "plant", "contract")

    upload_id: Mapped[int | None] = _upload_ref()
    date: Mapped[Date]
    block: Mapped[int] = mapped_column(SmallInteger)
    plant: Mapped[str] = mapped_column(String(128), default="")
    contract: Mapped[str] = mapped_column(String(128), default="")
    dam_price: Mapped[float | None] = mapped_column(Float)
    rtm_price: Mapped[float | None] = mapped_column(Float)
    gdam_price: Mapped[float | None] = mapped_column(Float)
    scheduled_mw: Mapped[float | None] = mapped_column(Float)
    model_result_mw: Mapped[float | None] = mapped_column(Float)
    purchase_bid_mw: Mapped[float | None] = mapped_column(Float)
    sell_bid_mw: Mapped[float | None] = mapped_column(Float)
    state: Mapped[str | None] = mapped_column(String(128))
    region: Mapped[str | None] = mapped_column(String(128))
    plant_name: Mapped[str | None] = mapped_column(String(255))
    contract_name: Mapped[str | None] = mapped_column(String(255))
    model_id: Mapped[str | None] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow, onupdate=utcnow)


class ExchangePrice(Base):
    __tablename__ = "exchange_prices"
    __table_args__ = _keyed_by("date", "block", "market", "area")

    upload_id: Mapped[int | None] = _upload_ref()
    market: Mapped[str] = mapped_column(String(8))  # DAM | RTM | GDAM
    date: Mapped[Date]
    block: Mapped[int] = mapped_column(SmallInteger)
    area: Mapped[str] = mapped_column(String(16), default="system")
    purchase_bid_mw: Mapped[float | None] = mapped_column(Float)
    sell_bid_mw: Mapped[float | None] = mapped_column(Float)
    mcv_mw: Mapped[float | None] = mapped_column(Float)
    fsv_mw: Mapped[float | None] = mapped_column(Float)
    mcp: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow, onupdate=utcnow)


class GeneratorSchedule(Base):
    __tablename__ = "generator_schedule"
    __table_args__ = _keyed_by("date", "block", "plant_id", "contract")

    upload_id: Mapped[int | None] = _upload_ref()
    date: Mapped[Date]
    block: Mapped[int] = mapped_column(SmallInteger)
    plant_id: Mapped[str] = mapped_column(String(128))
    contract: Mapped[str] = mapped_column(String(128), default="")
    region: Mapped[str | None] = mapped_column(String(128))
    state: Mapped[str | None] = mapped_column(String(128))
    plant_name: Mapped[str | None] = mapped_column(String(255))
    technology_type: Mapped[str | None] = mapped_column(String(64))
    contract_name: Mapped[str | None] = mapped_column(String(255))
    scheduled_mw: Mapped[float | None] = mapped_column(Float)
    actual_mw: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow, onupdate=utcnow)


class ContractSchedule(Base):
    __tablename__ = "contract_schedule"
    __table_args__ = _keyed_by("date", "block", "contract")

    upload_id: Mapped[int | None] = _upload_ref()
    date: Mapped[Date]
    block: Mapped[int] = mapped_column(SmallInteger)
    contract: Mapped[str] = mapped_column(String(128))
    contract_name: Mapped[str | None] = mapped_column(String(255))
    contract_type: Mapped[str | None] = mapped_column(String(64))
    counterparty: Mapped[str | None] = mapped_column(String(255))
    scheduled_mw: Mapped[float | None] = mapped_column(Float)
    rate: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow, onupdate=utcnow)


class MarketBid(Base):
    __tablename__ = "market_bids"
    __table_args__ = _keyed_by("date", "block", "plant_id", "market")

    upload_id: Mapped[int | None] = _upload_ref()
    date: Mapped[Date]
    block: Mapped[int] = mapped_column(SmallInteger)
    plant_id: Mapped[str] = mapped_column(String(128))
    market: Mapped[str] = mapped_column(String(16))
    region: Mapped[str | None] = mapped_column(String(128))
    state: Mapped[str | None] = mapped_column(String(128))
    plant_name: Mapped[str | None] = mapped_column(String(255))
    market_type: Mapped[str | None] = mapped_column(String(8))
    bid_price: Mapped[float | None] = mapped_column(Float)
    bid_volume_mw: Mapped[float | None] = mapped_column(Float)
    clearing_price: Mapped[float | None] = mapped_column(Float)
    clearing_volume_mw: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow, onupdate=utcnow)


class StorageSchedule(Base):
    """Battery / pumped-hydro positions, the input of SO (storage) models."""

    __tablename__ = "storage_schedule"
    __table_args__ = _keyed_by("date", "block", "region", "state", "storage_type")

    upload_id: Mapped[int | None] = _upload_ref()
    date: Mapped[Date]
    block: Mapped[int] = mapped_column(SmallInteger)
    region: Mapped[str] = mapped_column(String(128), default="")
    state: Mapped[str] = mapped_column(String(128), default="")
    storage_type: Mapped[str] = mapped_column(String(64), default="")
    capacity_mw: Mapped[float | None] = mapped_column(Float)
    charge_mw: Mapped[float | None] = mapped_column(Float)
    discharge_mw: Mapped[float | None] = mapped_column(Float)
    state_of_charge: Mapped[float | None] = mapped_column(Float)
    efficiency: Mapped[float | None] = mapped_column(Float)
    cycles: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow, onupdate=utcnow)


DATASET_MODELS: dict[str, type[Base]] = {
    "market-snapshot": MarketSnapshot,
    "exchange-prices": ExchangePrice,
    "generator-schedule": GeneratorSchedule,
    "contract-schedule": ContractSchedule,
    "market-bids": MarketBid,
    "storage-schedule": StorageSchedule,
}


# --- alerts on market data and notifications leaving the server (issue 13) ---


class AlertRule(Base):
    """A threshold rule on a market series, with its Grafana-style state.

    ``version`` grows at every state change: servers write a change only where the version is
    still the one they read, so two evaluating at once make one transition."""

    __tablename__ = "alert_rules"
    __table_args__ = (Index("ix_alert_rules_enabled", "enabled"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    series: Mapped[str] = mapped_column(String(32))
    operator: Mapped[str] = mapped_column(String(2))  # > | <
    threshold: Mapped[float] = mapped_column(Float)
    recovery_threshold: Mapped[float | None] = mapped_column(Float)
    aggregate: Mapped[str] = mapped_column(String(16), default="block")  # block | daily_avg
    unit: Mapped[str] = mapped_column(String(8), default="mw")  # mw | pct (deviation)
    scope: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    pending_evaluations: Mapped[int] = mapped_column(Integer, default=1)
    mute: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Kolkata")
    channels: Mapped[list[str]] = mapped_column(JSON, default=list)
    throttle_s: Mapped[int] = mapped_column(Integer, default=900)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    state: Mapped[str] = mapped_column(String(16), default="normal")  # normal|pending|firing
    state_since: Mapped[datetime | None] = mapped_column(TZDateTime)
    breaches: Mapped[int] = mapped_column(Integer, default=0)
    last_value: Mapped[float | None] = mapped_column(Float)
    last_evaluated_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    last_notified_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    created_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)


class AlertHistory(Base):
    """One state change of a rule, with the values that caused it."""

    __tablename__ = "alert_history"
    __table_args__ = (Index("ix_alert_history_rule_created", "rule_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"))
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))  # pending | firing | resolved | normal
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    notified: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)


class Delivery(Base):
    """One notification to one apprise URL: an outbox row any server may claim and send.

    ``url`` is the real address and never leaves the server; ``channel`` is it masked."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("notification_id", "url_sha256"),
        Index("ix_deliveries_status_next", "status", "next_attempt_at"),
        Index("ix_deliveries_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    notification_id: Mapped[int | None] = mapped_column(
        ForeignKey("notifications.id", ondelete="SET NULL")
    )
    channel: Mapped[str] = mapped_column(Text)
    url: Mapped[str] = mapped_column(Text)
    url_sha256: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(16), default="info")
    status: Mapped[str] = mapped_column(String(16), default="pending")  # sending|sent|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=4)
    next_attempt_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(36))
    claimed_until: Mapped[datetime | None] = mapped_column(TZDateTime)
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(TZDateTime)
