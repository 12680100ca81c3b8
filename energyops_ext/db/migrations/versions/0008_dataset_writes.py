"""dataset tables: no foreign key and no index on upload_id, no date index where the unique
key already leads with the date

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-11 12:00:00

A bulk upload paid for each of them on every row: the foreign-key check alone was 45% of the
server's time for a COPY of a year of blocks on PostgreSQL (SQLite checks it per row too). The
upload a row names is written in the same transaction as the row, and uploads are never
deleted, so the reference cannot dangle; nothing looks rows up by upload. A date range is read
through the unique key (date first) on every dataset table but ``exchange_prices``, whose key
leads with the market and which keeps its date index.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = (
    "market_snapshot",
    "exchange_prices",
    "generator_schedule",
    "contract_schedule",
    "market_bids",
    "storage_schedule",
)
DATE_KEYED = tuple(t for t in TABLES if t != "exchange_prices")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"fk_{table}_upload_id_uploads", type_="foreignkey")
            batch.drop_index(f"ix_{table}_upload_id")
            if table in DATE_KEYED:
                batch.drop_index(f"ix_{table}_date")


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.create_foreign_key(
                f"fk_{table}_upload_id_uploads",
                "uploads",
                ["upload_id"],
                ["id"],
                ondelete="SET NULL",
            )
            batch.create_index(f"ix_{table}_upload_id", ["upload_id"])
            if table in DATE_KEYED:
                batch.create_index(f"ix_{table}_date", ["date"])
