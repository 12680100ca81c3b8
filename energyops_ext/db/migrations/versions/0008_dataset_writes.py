"""dataset tables: no foreign key and no index on upload_id; every unique key leads with the
date, and no separate date index

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-11 12:00:00

A bulk upload paid for each of them on every row: the foreign-key check alone was 45% of the
server's time for a COPY of a year of blocks on PostgreSQL (SQLite checks it per row too). The
upload a row names is written in the same transaction as the row, and uploads are never
deleted, so the reference cannot dangle; nothing looks rows up by upload. A date range is read
through the unique key, date first: ``exchange_prices``' key led with the market, and with its
date index beside it a COPY of a year took a third longer than with the one key in date order.
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
MARKET_FIRST = ["market", "date", "block", "area"]
DATE_FIRST = ["date", "block", "market", "area"]


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"fk_{table}_upload_id_uploads", type_="foreignkey")
            batch.drop_index(f"ix_{table}_upload_id")
            batch.drop_index(f"ix_{table}_date")
            if table == "exchange_prices":
                batch.drop_constraint(_unique(MARKET_FIRST), type_="unique")
                batch.create_unique_constraint(_unique(DATE_FIRST), DATE_FIRST)


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            if table == "exchange_prices":
                batch.drop_constraint(_unique(DATE_FIRST), type_="unique")
                batch.create_unique_constraint(_unique(MARKET_FIRST), MARKET_FIRST)
            batch.create_foreign_key(
                f"fk_{table}_upload_id_uploads",
                "uploads",
                ["upload_id"],
                ["id"],
                ondelete="SET NULL",
            )
            batch.create_index(f"ix_{table}_upload_id", ["upload_id"])
            batch.create_index(f"ix_{table}_date", ["date"])


def _unique(columns: list[str]) -> str:
    return f"uq_exchange_prices_{'_'.join(columns)}"
