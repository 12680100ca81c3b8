"""models: script format and declared parameters; run parameters, stop requests, stopped
early, input hashes and the last solver figures

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-09 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUN_COLUMNS = (
    "parameters",
    "stop_requested_at",
    "stop_requested_by",
    "stopped_early",
    "input_hashes",
    "solver",
)


def upgrade() -> None:
    # plain ADD COLUMN, never a rebuild: on SQLite a rebuild of runs would cascade into
    # log_lines (see 0002)
    op.add_column(
        "scripts", sa.Column("format", sa.String(length=8), nullable=False, server_default="py")
    )
    op.add_column(
        "scripts", sa.Column("parameters", sa.JSON(), nullable=False, server_default="[]")
    )
    op.add_column("runs", sa.Column("parameters", sa.JSON(none_as_null=True), nullable=True))
    op.add_column("runs", sa.Column("stop_requested_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("runs", sa.Column("stop_requested_by", sa.String(length=255), nullable=True))
    op.add_column(
        "runs",
        sa.Column("stopped_early", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("runs", sa.Column("input_hashes", sa.JSON(none_as_null=True), nullable=True))
    op.add_column("runs", sa.Column("solver", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    for column in reversed(RUN_COLUMNS):
        op.drop_column("runs", column)
    op.drop_column("scripts", "parameters")
    op.drop_column("scripts", "format")
