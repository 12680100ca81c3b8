"""the desk's day: schedules, schedule_fires, deadline_notices; attempts, deadlines and
retries on runs

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUN_COLUMNS = (
    "attempt",
    "first_run_id",
    "schedule_id",
    "deadline_at",
    "deadline_missed",
    "retry",
    "channels",
    "not_before",
    "retry_outcome",
)
RUN_INDEXES = ("uq_runs_first_run_attempt", "ix_runs_schedule_id", "ix_runs_deadline_at")


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("script_id", sa.Integer(), nullable=True),
        sa.Column("script_name", sa.String(length=255), nullable=True),
        sa.Column("cron", sa.String(length=255), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("timeout_s", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("deadline", sa.String(length=16), nullable=True),
        sa.Column("retry", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("max_lateness_s", sa.Integer(), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("anchor_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_slot", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["script_id"],
            ["scripts.id"],
            name=op.f("fk_schedules_script_id_scripts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
    )
    op.create_table(
        "schedule_fires",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("schedule_id", sa.Integer(), nullable=False),
        sa.Column("slot", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("server_id", sa.String(length=36), nullable=True),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_schedule_fires_run_id_runs"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name=op.f("fk_schedule_fires_schedule_id_schedules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule_fires")),
        sa.UniqueConstraint("schedule_id", "slot", name=op.f("uq_schedule_fires_schedule_id_slot")),
    )
    op.create_table(
        "deadline_notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("server_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
            name=op.f("fk_deadline_notices_run_id_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deadline_notices")),
        sa.UniqueConstraint("run_id", "kind", name=op.f("uq_deadline_notices_run_id_kind")),
    )
    # plain ADD COLUMN and CREATE INDEX: never a rebuild of runs (on SQLite a rebuild would
    # cascade into log_lines); no foreign keys on runs for the same reason
    op.add_column("runs", sa.Column("attempt", sa.Integer(), nullable=False, server_default="1"))
    op.add_column("runs", sa.Column("first_run_id", sa.Integer(), nullable=True))
    op.add_column("runs", sa.Column("schedule_id", sa.Integer(), nullable=True))
    op.add_column("runs", sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "runs",
        sa.Column("deadline_missed", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("runs", sa.Column("retry", sa.JSON(none_as_null=True), nullable=True))
    op.add_column("runs", sa.Column("channels", sa.JSON(), nullable=False, server_default="[]"))
    op.add_column("runs", sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))
    op.add_column("runs", sa.Column("retry_outcome", sa.String(length=16), nullable=True))
    op.create_index("uq_runs_first_run_attempt", "runs", ["first_run_id", "attempt"], unique=True)
    op.create_index("ix_runs_schedule_id", "runs", ["schedule_id"], unique=False)
    op.create_index("ix_runs_deadline_at", "runs", ["deadline_at"], unique=False)


def downgrade() -> None:
    for index in RUN_INDEXES:
        op.drop_index(index, table_name="runs")
    for column in reversed(RUN_COLUMNS):
        op.drop_column("runs", column)
    op.drop_table("deadline_notices")
    op.drop_table("schedule_fires")
    op.drop_table("schedules")
