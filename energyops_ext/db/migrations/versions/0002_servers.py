"""servers sharing one database: the server registry, run owners, kill requests, event relay

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 18:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "servers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("boot_id", sa.String(length=64), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("pid_start_time", sa.BigInteger(), nullable=True),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("executor", sa.String(length=16), nullable=False),
        sa.Column("url", sa.String(length=512), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dead_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_servers")),
    )
    op.create_table(
        "cluster_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("server_id", sa.String(length=36), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cluster_events")),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("server_id", sa.String(length=36), nullable=True))
        batch_op.add_column(
            sa.Column("executor", sa.String(length=16), nullable=False, server_default="local")
        )
        batch_op.add_column(sa.Column("worker", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("workdir", sa.String(length=1024), nullable=True))
        batch_op.add_column(
            sa.Column("kill_requested_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("kill_requested_by", sa.String(length=255), nullable=True))
        batch_op.create_index("ix_runs_server_status", ["server_id", "status"], unique=False)


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN, never a rebuild of runs: on SQLite with foreign keys on,
    # a rebuild (DROP TABLE runs) would cascade into log_lines and delete every line
    op.drop_index("ix_runs_server_status", table_name="runs")
    for column in (
        "kill_requested_by",
        "kill_requested_at",
        "workdir",
        "worker",
        "executor",
        "server_id",
    ):
        op.drop_column("runs", column)
    op.drop_table("cluster_events")
    op.drop_table("servers")
