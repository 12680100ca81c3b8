"""Dashboard KPIs: aggregate SQL over real rows, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy.orm import Session

from energyops_ext.db import Database
from energyops_ext.db.models import MarketSnapshot, Notification, Run, Script, Upload
from energyops_ext.events.kpi import kpi_report

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


def seed(session: Session) -> None:
    script = Script(
        kind="test", name="test_a.py", version=1, sha256="0" * 64, size=1, storage_key="k"
    )
    session.add(script)
    session.flush()
    hours_ago: list[tuple[str, int | None]] = [
        ("running", None),
        ("queued", None),
        ("queued", None),
    ]
    hours_ago += [("succeeded", 1), ("succeeded", 5), ("failed", 23), ("failed", 30)]
    for status, age in hours_ago:
        finished = NOW - timedelta(hours=age) if age is not None else None
        session.add(Run(script_id=script.id, status=status, finished_at=finished))
    for day, block, dam, rtm, gdam, mw in [
        (date(2025, 3, 9), 1, 1000.0, 900.0, 1100.0, 10.0),
        (date(2025, 3, 10), 1, 3000.0, 2000.0, None, 40.0),
        (date(2025, 3, 10), 2, 5000.0, 4000.0, None, 60.5),
    ]:
        session.add(
            MarketSnapshot(
                date=day,
                block=block,
                dam_price=dam,
                rtm_price=rtm,
                gdam_price=gdam,
                scheduled_mw=mw,
            )
        )
    for age in (2, 47):
        session.add(
            Upload(
                kind="market_snapshot",
                filename="f.csv",
                size=1,
                sha256="0" * 64,
                status="stored",
                created_at=NOW - timedelta(hours=age),
            )
        )
    for is_read, is_archived in [(False, False), (False, False), (True, False), (False, True)]:
        session.add(
            Notification(
                type="run_failed",
                category="run",
                severity="error",
                title="t",
                message="m",
                is_read=is_read,
                is_archived=is_archived,
            )
        )


def test_kpi_report_aggregates_runs_market_uploads_and_notifications(database: Database) -> None:
    database.write_sync(seed)
    report = database.read_sync(lambda s: kpi_report(s, NOW))
    assert report == {
        "at": NOW.isoformat(),
        "runs": {"running": 1, "queued": 2, "finished_24h": {"failed": 1, "succeeded": 2}},
        "market": {
            "date": "2025-03-10",
            "avg_dam_price": 4000.0,
            "avg_rtm_price": 3000.0,
            "avg_gdam_price": None,
            "total_scheduled_mw": 100.5,
            "rows": 2,
        },
        "uploads_24h": 1,
        "unread_notifications": 2,
    }


def test_kpi_report_on_an_empty_database(database: Database) -> None:
    report = database.read_sync(lambda s: kpi_report(s, NOW))
    assert report["runs"] == {"running": 0, "queued": 0, "finished_24h": {}}
    assert report["market"] is None
    assert report["uploads_24h"] == 0 and report["unread_notifications"] == 0
