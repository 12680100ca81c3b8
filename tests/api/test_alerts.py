"""Alert rules through the API on both databases: CRUD, bad input, uploads that make a rule
pending then firing then resolved, alert events on the socket, and two servers racing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tornado.websocket import WebSocketClientConnection

from energyops_ext.alerts import AlertService
from energyops_ext.alerts import evaluate as alert_evaluation
from energyops_ext.alerts.store import create_rule
from energyops_ext.db import Database
from energyops_ext.db.models import AlertHistory, Delivery, MarketSnapshot, Notification
from energyops_ext.events import DATASETS, Event, EventHub
from energyops_ext.notify.outbox import set_global_channels
from energyops_ext.services import Services
from tests.ingest_files import SNAPSHOT_HEADER, csv_bytes, snapshot_rows

from .conftest import Fetch, assert_error, body
from .test_datasets import upload
from .wsclient import EventsClient

WsFetch = Callable[..., Awaitable[WebSocketClientConnection]]

DAY = date(2024, 4, 13)
SPIKE = {73: 9500.0, 74: 9600.0, 75: 9700.0, 76: 9550.0}  # the evening peak, Rs/MWh
DAM = 3  # column of the DAM price in snapshot_rows


def day_file(day: date = DAY, prices: dict[int, float] | None = None) -> bytes:
    """96 blocks of one plant; DAM prices 3001-3096 but for the blocks in ``prices``."""
    rows = snapshot_rows(day)
    for row in rows:
        block = int(row[1])
        if prices and block in prices:
            row[DAM] = prices[block]
    return csv_bytes(SNAPSHOT_HEADER, rows)


RULE: dict[str, Any] = {
    "name": "DAM spike",
    "series": "dam_price",
    "operator": ">",
    "threshold": 9000,
    "recovery_threshold": 8500,
    "pending_evaluations": 2,
    "scope": {"date": DAY.isoformat()},
}


async def create(api: Fetch, **changes: Any) -> dict[str, Any]:
    response = await api("POST", "alerts", json={**RULE, **changes})
    assert response.code == 201, response.body
    rule: dict[str, Any] = body(response)
    return rule


async def upload_day(api: Fetch, services: Services, data: bytes) -> None:
    response = await upload(api, "market-snapshot", "day.csv", data)
    assert response.code == 201, response.body
    await services.alerts.settled()


async def history(api: Fetch, rule_id: int) -> list[dict[str, Any]]:
    response = await api("GET", f"alerts/{rule_id}/history")
    assert response.code == 200, response.body
    items: list[dict[str, Any]] = body(response)["items"]
    return items


# --- CRUD ---


async def test_create_read_update_delete(api: Fetch) -> None:
    rule = await create(
        api,
        channels=["json://user:s3cret@127.0.0.1:9/hook"],
        mute=[{"start": "22:00", "end": "06:00", "days": ["sat", "sun"]}],
    )
    assert rule["state"] == "normal" and rule["since"] is not None
    assert rule["breaches"] == 0 and rule["version"] == 1 and rule["enabled"] is True
    assert rule["scope"] == {"date": "2024-04-13", "blocks": None}
    assert rule["aggregate"] == "block" and rule["unit"] == "mw" and rule["throttle_s"] == 900
    assert rule["timezone"] == "Asia/Kolkata" and rule["created_by"] == "quant"
    assert rule["channels"] == ["json://***@127.0.0.1:9/hook"]
    assert "s3cret" not in str(rule)

    listed = body(await api("GET", "alerts"))
    assert listed["total"] == 1 and [r["id"] for r in listed["items"]] == [rule["id"]]
    assert listed["counts"] == {"normal": 1, "pending": 0, "firing": 0}
    assert body(await api("GET", "alerts", params={"state": "firing"}))["total"] == 0
    assert body(await api("GET", f"alerts/{rule['id']}")) == rule

    r = await api("PATCH", f"alerts/{rule['id']}", json={"threshold": 9500, "scope": "today"})
    assert r.code == 200, r.body
    changed = body(r)
    assert changed["threshold"] == 9500 and changed["scope"] == {"date": "today", "blocks": None}
    assert changed["version"] == 2 and changed["recovery_threshold"] == 8500

    r = await api("PATCH", f"alerts/{rule['id']}", json={"enabled": False})
    assert body(r)["enabled"] is False
    assert body(await api("GET", "alerts", params={"enabled": "false"}))["total"] == 1

    r = await api("DELETE", f"alerts/{rule['id']}")
    assert r.code == 204
    assert_error(
        await api("GET", f"alerts/{rule['id']}"),
        404,
        "not_found",
        f"alert rule {rule['id']} does not exist",
    )
    assert_error(await api("DELETE", f"alerts/{rule['id']}"), 404, "not_found")
    assert_error(await api("GET", "alerts/999/history"), 404, "not_found")
    assert_error(await api("PATCH", "alerts/999", json={"threshold": 1}), 404, "not_found")


BAD_RULES: list[tuple[dict[str, Any], int, str, str]] = [
    (
        {"series": "coal_price"},
        422,
        "invalid_field",
        "series must be one of dam_price, rtm_price, gdam_price, dam_rtm_spread, "
        "schedule_deviation; got 'coal_price'",
    ),
    ({"operator": ">="}, 422, "invalid_field", "operator must be one of >, <; got '>='"),
    ({"threshold": "9000"}, 422, "invalid_field", "threshold must be a finite number; got '9000'"),
    ({"threshold": True}, 422, "invalid_field", "threshold must be a finite number; got True"),
    ({"threshold": None}, 422, "invalid_field", "threshold is required"),
    (
        {"recovery_threshold": 9500},
        422,
        "invalid_field",
        "recovery_threshold must be at most threshold for operator '>' (a firing rule resolves "
        "when the value falls below it); got 9500 > 9000",
    ),
    (
        {"operator": "<", "threshold": 100, "recovery_threshold": 50},
        422,
        "invalid_field",
        "recovery_threshold must be at least threshold for operator '<' (a firing rule resolves "
        "when the value rises above it); got 50 < 100",
    ),
    (
        {"recovery_threshold": "8500"},
        422,
        "invalid_field",
        "recovery_threshold must be a finite number; got '8500'",
    ),
    (
        {"pending_evaluations": 0},
        422,
        "invalid_field",
        "pending_evaluations must be an integer from 1 to 1000; got 0",
    ),
    (
        {"pending_evaluations": 1.5},
        422,
        "invalid_field",
        "pending_evaluations must be an integer from 1 to 1000; got 1.5",
    ),
    (
        {"scope": "yesterday"},
        422,
        "invalid_field",
        "scope.date must be any, today, tomorrow or a date YYYY-MM-DD; got 'yesterday'",
    ),
    (
        {"scope": {"date": "2024-02-30"}},
        422,
        "invalid_field",
        "scope.date must be any, today, tomorrow or a date YYYY-MM-DD; got '2024-02-30'",
    ),
    (
        {"scope": {"date": "any", "blocks": [80, 70]}},
        422,
        "invalid_field",
        "scope.blocks must be [from, to] with 1 <= from <= to <= 96; got [80, 70]",
    ),
    (
        {"scope": {"date": "any", "blocks": [1, 97]}},
        422,
        "invalid_field",
        "scope.blocks must be [from, to] with 1 <= from <= to <= 96; got [1, 97]",
    ),
    ({"scope": {"day": "today"}}, 422, "invalid_field", "scope has unknown keys: day"),
    (
        {"mute": [{"start": "25:00", "end": "06:00"}]},
        422,
        "invalid_field",
        "mute[0].start must be a time HH:MM; got '25:00'",
    ),
    (
        {"mute": [{"start": "22:00"}]},
        422,
        "invalid_field",
        "mute[0].end must be a time HH:MM; got None",
    ),
    (
        {"mute": [{"start": "22:00", "end": "22:00"}]},
        422,
        "invalid_field",
        "mute[0].end must differ from its start",
    ),
    (
        {"mute": [{"start": "22:00", "end": "06:00", "days": ["funday"]}]},
        422,
        "invalid_field",
        "mute[0].days must be a list of mon, tue, wed, thu, fri, sat, sun; got ['funday']",
    ),
    ({"mute": "nights"}, 422, "invalid_field", "mute must be a list of at most 20 windows"),
    (
        {"channels": ["notaservice://x"]},
        422,
        "invalid_channel",
        "channels[0] is not an apprise URL apprise recognises: 'notaservice://***'",
    ),
    (
        {"channels": ["json://***@127.0.0.1:9/hook"]},
        422,
        "invalid_channel",
        "channels[0] is a masked URL (it contains ***); send the full apprise URL",
    ),
    (
        {"channels": "mailto://a@b.example"},
        422,
        "invalid_field",
        "channels must be a list of apprise URLs (strings)",
    ),
    (
        {"timezone": "Mars/Olympus"},
        422,
        "invalid_field",
        "timezone 'Mars/Olympus' is not a known zone",
    ),
    (
        {"aggregate": "hourly"},
        422,
        "invalid_field",
        "aggregate must be one of block, daily_avg; got 'hourly'",
    ),
    ({"unit": "pct"}, 422, "invalid_field", "unit pct applies only to series schedule_deviation"),
    (
        {"throttle_s": -1},
        422,
        "invalid_field",
        "throttle_s must be an integer from 0 to 604800; got -1",
    ),
    ({"enabled": "yes"}, 422, "invalid_field", "enabled must be true or false; got 'yes'"),
    (
        {"name": " "},
        422,
        "invalid_field",
        "name must be a non-empty string of at most 255 characters",
    ),
    ({"colour": "red"}, 422, "unknown_field", "unknown field 'colour'; a rule has: name, "),
]


@pytest.mark.parametrize(
    ("changes", "status", "code", "message"),
    BAD_RULES,
    ids=[next(iter(c)) + f"-{i}" for i, (c, *_) in enumerate(BAD_RULES)],
)
async def test_bad_rules_are_422_naming_the_field(
    api: Fetch, changes: dict[str, Any], status: int, code: str, message: str
) -> None:
    error = assert_error(await api("POST", "alerts", json={**RULE, **changes}), status, code)
    assert error["message"].startswith(message), error
    if code != "unknown_field":
        field = error["details"]["field"]
        assert field.split("[")[0].split(".")[0] in changes, error
    assert body(await api("GET", "alerts"))["total"] == 0


async def test_bad_patches(api: Fetch) -> None:
    rule = await create(api)
    path = f"alerts/{rule['id']}"
    # the rule is checked whole: a new threshold below the recovery threshold is refused
    assert_error(
        await api("PATCH", path, json={"threshold": 8000}),
        422,
        "invalid_field",
        "recovery_threshold must be at most threshold for operator '>'",
    )
    assert_error(await api("PATCH", path, json={"operator": "<"}), 422, "invalid_field")
    assert_error(
        await api("PATCH", path, json={"threshold": float("nan")}), 422, "non_finite_number"
    )
    assert_error(await api("PATCH", path, body=b"[1]"), 400, "invalid_json")
    assert body(await api("GET", path))["version"] == 1


# --- uploads make the rule pending, then firing, then resolved ---


async def test_upload_makes_the_rule_pending_then_firing_then_resolved(
    api: Fetch, services: Services
) -> None:
    rule = await create(api)
    await upload_day(api, services, day_file(prices=SPIKE))
    after_one = body(await api("GET", f"alerts/{rule['id']}"))
    assert (after_one["state"], after_one["breaches"]) == ("pending", 1)
    assert after_one["last_value"] == 9700
    [pending] = await history(api, rule["id"])
    assert (pending["from_state"], pending["to_state"]) == ("normal", "pending")
    assert pending["value"] == 9700 and pending["threshold"] == 9000
    assert pending["notified"] is False
    detail = pending["detail"]
    assert detail["date"] == "2024-04-13" and detail["peak"] == {"block": 75, "value": 9700}
    assert detail["blocks"] == [{"block": b, "value": v} for b, v in SPIKE.items()]
    assert detail["blocks_beyond"] == 4 and detail["block_count"] == 96
    assert detail["evaluated_by"] == services.me.id

    await upload_day(api, services, day_file(prices=SPIKE))  # evaluation 2 of 2
    firing = body(await api("GET", f"alerts/{rule['id']}"))
    assert (firing["state"], firing["breaches"]) == ("firing", 2)
    newest = await history(api, rule["id"])
    assert [(h["from_state"], h["to_state"]) for h in newest] == [
        ("pending", "firing"),
        ("normal", "pending"),
    ]
    assert newest[0]["notified"] is True and firing["last_notified_at"] is not None
    notes = body(await api("GET", "notifications"))["items"]
    alert_notes = [n for n in notes if n["category"] == "alert"]
    assert [(n["type"], n["title"], n["message"]) for n in alert_notes] == [
        (
            "alert_firing",
            "Alert firing: DAM spike",
            "DAM price > 9000: 9700 on 2024-04-13 in blocks 73-76 (per block)",
        )
    ]
    assert alert_notes[0]["entity_type"] == "alert"
    assert alert_notes[0]["entity_id"] == rule["id"]

    # 8600 is below the threshold but above the recovery threshold: still firing
    await upload_day(api, services, day_file(prices={75: 8600.0}))
    still = body(await api("GET", f"alerts/{rule['id']}"))
    assert still["state"] == "firing" and still["last_value"] == 8600
    assert len(await history(api, rule["id"])) == 2

    await upload_day(api, services, day_file())
    resolved = body(await api("GET", f"alerts/{rule['id']}"))
    assert resolved["state"] == "normal" and resolved["last_value"] == 3096
    latest = (await history(api, rule["id"]))[0]
    assert (latest["from_state"], latest["to_state"]) == ("firing", "resolved")
    assert latest["threshold"] == 8500 and latest["detail"]["blocks"] == []
    notes = body(await api("GET", "notifications"))["items"]
    assert [n["message"] for n in notes if n["type"] == "alert_resolved"] == [
        "DAM price back below 8500: 3096 on 2024-04-13"
    ]
    activities = body(await api("GET", "activities", params={"type": "alert"}))["items"]
    assert [a["action"] for a in activities] == ["resolved", "firing"]


SERIES_CASES: list[tuple[dict[str, Any], float | None, str]] = [
    # prices 3001-3096 (spike aside); RTM 3101-3196; GDAM 2901-2996; scheduled 101-196,
    # model 91-186: deviation 10 MW per block, 10/91 = 10.99% at block 1
    ({"series": "rtm_price", "threshold": 3190, "recovery_threshold": None}, 3196, "firing"),
    (
        {"series": "gdam_price", "operator": "<", "threshold": 2905, "recovery_threshold": None},
        2901,
        "firing",
    ),
    (
        {"series": "dam_rtm_spread", "operator": "<", "threshold": -50, "recovery_threshold": None},
        -100,
        "firing",
    ),
    ({"series": "schedule_deviation", "threshold": 9, "recovery_threshold": None}, 10, "firing"),
    (
        {
            "series": "schedule_deviation",
            "unit": "pct",
            "threshold": 10.9,
            "recovery_threshold": None,
        },
        10.989,
        "firing",
    ),
    (
        {
            "series": "dam_price",
            "aggregate": "daily_avg",
            "threshold": 3049,
            "recovery_threshold": None,
        },
        3048.5,
        "normal",
    ),
    (
        {
            "series": "dam_price",
            "aggregate": "daily_avg",
            "threshold": 3048,
            "recovery_threshold": None,
        },
        3048.5,
        "firing",
    ),
    (
        {
            "series": "dam_price",
            "scope": {"date": "any", "blocks": [1, 4]},
            "threshold": 3003,
            "recovery_threshold": None,
        },
        3004,
        "firing",
    ),
    (
        {
            "series": "dam_price",
            "scope": {"date": "2024-04-14"},
            "threshold": 1,
            "recovery_threshold": None,
        },
        None,
        "normal",
    ),
]


@pytest.mark.parametrize(("changes", "value", "state"), SERIES_CASES)
async def test_series_values_from_the_database(
    api: Fetch, services: Services, changes: dict[str, Any], value: float | None, state: str
) -> None:
    await upload_day(api, services, day_file())
    rule = await create(api, pending_evaluations=1, **changes)
    report = await services.alerts.evaluate()
    assert report.evaluated == 1 and report.written == 1
    found = body(await api("GET", f"alerts/{rule['id']}"))
    assert found["state"] == state
    assert found["last_value"] == (None if value is None else pytest.approx(value, abs=1e-3))


async def test_only_local_market_updates_trigger_an_evaluation(
    api: Fetch, services: Services
) -> None:
    await upload_day(api, services, day_file(prices=SPIKE))
    rule = await create(api)  # after the upload: not evaluated yet
    remote = Event(DATASETS, "market.updated", {"kind": "market-snapshot"}, remote=True)
    services.hub.publish(remote)
    await services.alerts.settled()
    assert await history(api, rule["id"]) == []
    other_kind = Event(DATASETS, "market.updated", {"kind": "exchange-prices"})
    services.hub.publish(other_kind)
    await services.alerts.settled()
    assert await history(api, rule["id"]) == []
    services.hub.publish(Event(DATASETS, "market.updated", {"kind": "market-snapshot"}))
    await services.alerts.settled()
    assert [h["to_state"] for h in await history(api, rule["id"])] == ["pending"]


# --- events on the socket ---


@pytest.fixture
def connect(services: Services, jp_ws_fetch: WsFetch) -> Iterator[Callable[[], Awaitable[Any]]]:
    clients: list[EventsClient] = []

    async def open_client() -> EventsClient:
        client = EventsClient(await jp_ws_fetch("energyops", "api", "events"))
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()


async def test_alert_events_reach_a_websocket_subscriber(
    api: Fetch, services: Services, connect: Callable[[], Awaitable[EventsClient]]
) -> None:
    events_client = await connect()
    await events_client.subscribe("alerts")
    rule = await create(api)
    await upload_day(api, services, day_file(prices=SPIKE))
    await upload_day(api, services, day_file(prices=SPIKE))
    frames = await events_client.until(lambda f: f["type"] == "alert.firing")
    alerts = [f for f in frames if f["topic"] == "alerts"]
    assert [f["type"] for f in alerts] == ["alert.created", "alert.pending", "alert.firing"]
    assert alerts[0]["data"]["id"] == rule["id"] and alerts[0]["data"]["state"] == "normal"
    data = alerts[-1]["data"]
    assert data["rule_id"] == rule["id"] and data["name"] == "DAM spike"
    assert (data["from_state"], data["state"], data["transition"]) == (
        "pending",
        "firing",
        "firing",
    )
    assert data["value"] == 9700 and data["detail"]["peak"] == {"block": 75, "value": 9700}
    assert data["detail"]["notified"] is True


# --- two servers on one database ---

NOW = datetime(2024, 4, 13, 12, 0, tzinfo=UTC)


def seed_day(db: Database, prices: dict[int, float]) -> None:
    def add(session: Session) -> None:
        session.add_all(
            MarketSnapshot(date=DAY, block=b, dam_price=prices.get(b, 3000.0 + b))
            for b in range(1, 97)
        )

    db.write_sync(add)


def counts(db: Database) -> tuple[int, int, int]:
    def count(session: Session) -> tuple[int, int, int]:
        return (
            session.scalar(select(func.count()).select_from(AlertHistory)) or 0,
            session.scalar(
                select(func.count())
                .select_from(Notification)
                .where(Notification.category == "alert")
            )
            or 0,
            session.scalar(select(func.count()).select_from(Delivery)) or 0,
        )

    return db.read_sync(count)


class Servers:
    """Two evaluation services (two servers) on one database, on one controllable clock."""

    def __init__(self, database: Database, db_url: str) -> None:
        self.now = NOW
        self.dbs = [database, Database(db_url)]
        self.services = [
            AlertService(db, EventHub(), f"server-{i}", logging.getLogger("test"), clock=self.clock)
            for i, db in enumerate(self.dbs)
        ]
        for db in self.dbs:
            set_global_channels(db.write_engine, ["json://127.0.0.1:9/desk"])

    def clock(self) -> datetime:
        return self.now

    def close(self) -> None:
        self.dbs[1].close()


@pytest.fixture
def two_servers(database: Database, db_url: str) -> Iterator[Servers]:
    servers = Servers(database, db_url)
    seed_day(database, SPIKE)
    yield servers
    servers.close()


def add_rule(db: Database, **changes: Any) -> int:
    rule = db.write_sync(lambda s: create_rule(s, {**RULE, **changes}, "quant", NOW))
    rule_id: int = rule["id"]
    return rule_id


async def test_two_servers_deciding_at_once_make_one_transition(two_servers: Servers) -> None:
    """Both read the rule at version 1 and decide ``pending``; the second write matches
    nothing and is dropped."""
    a, b = two_servers.dbs
    add_rule(a)
    _, plan_a = a.read_sync(lambda s: alert_evaluation.plan(s, NOW, trigger="timer", interval_s=60))
    _, plan_b = b.read_sync(lambda s: alert_evaluation.plan(s, NOW, trigger="timer", interval_s=60))
    assert [p.outcome.transition for p in plan_a + plan_b] == ["pending", "pending"]
    wrote_a = a.write_sync(lambda s: alert_evaluation.apply(s, plan_a, NOW, "server-0"))
    wrote_b = b.write_sync(lambda s: alert_evaluation.apply(s, plan_b, NOW, "server-1"))
    assert (wrote_a.written, wrote_a.dropped, len(wrote_a.events)) == (1, 0, 1)
    assert (wrote_b.written, wrote_b.dropped, len(wrote_b.events)) == (0, 1, 0)
    assert counts(a) == (1, 0, 0)


async def test_two_servers_racing_on_timers_count_each_evaluation_once(
    two_servers: Servers,
) -> None:
    """Every interval both servers' timers fire at the same moment: the rule still needs two
    intervals to fire, fires once and sends one notification to one channel."""
    first, second = two_servers.services
    rule_id = add_rule(two_servers.dbs[0], pending_evaluations=2, recovery_threshold=None)
    transitions: list[tuple[int, str]] = []
    for _ in range(4):
        reports = await asyncio.gather(first.evaluate("timer"), second.evaluate("timer"))
        assert sum(r.written for r in reports) == 1, reports
        transitions += [(rule_id, t["transition"]) for r in reports for t in r.transitions]
        two_servers.now += timedelta(seconds=60)
    assert transitions == [(rule_id, "pending"), (rule_id, "firing")]
    assert counts(two_servers.dbs[0]) == (2, 1, 1)


async def test_two_servers_racing_on_an_upload_notify_once(two_servers: Servers) -> None:
    first, second = two_servers.services
    add_rule(two_servers.dbs[0], pending_evaluations=1)
    for _ in range(3):
        await asyncio.gather(first.evaluate("data"), second.evaluate("data"))
    history_rows, notifications, deliveries = counts(two_servers.dbs[0])
    assert (history_rows, notifications, deliveries) == (1, 1, 1)


async def test_an_evaluation_of_new_data_dropped_by_a_race_is_made_again(
    two_servers: Servers,
) -> None:
    """Server 1's timer read the rule before the upload and writes first; server 0's
    evaluation of the uploaded day is dropped, then made again on the rule as written."""
    first, _second = two_servers.services
    a, b = two_servers.dbs
    later = DAY + timedelta(days=1)
    rule_id = add_rule(a, pending_evaluations=1, scope={"date": later.isoformat()})
    _, stale = b.read_sync(lambda s: alert_evaluation.plan(s, NOW, trigger="timer", interval_s=60))
    assert [p.value for p in stale] == [None]  # no data for that day yet

    def upload_later(session: Session) -> None:
        session.add_all(
            MarketSnapshot(date=later, block=blk, dam_price=SPIKE.get(blk, 3000.0 + blk))
            for blk in range(1, 97)
        )

    a.write_sync(upload_later)
    read = a.read
    raced = False

    async def read_then_race(fn: Callable[[Session], Any]) -> Any:
        nonlocal raced
        result = await read(fn)
        if not raced:  # server 1's stale write lands between server 0's read and write
            raced = True
            b.write_sync(lambda s: alert_evaluation.apply(s, stale, NOW, "server-1"))
        return result

    a.read = read_then_race  # type: ignore[method-assign]
    report = await first.evaluate("data")
    assert report.dropped == 1 and report.written == 1
    assert report.transitions == [{"rule_id": rule_id, "transition": "firing", "value": 9700}]
    assert counts(a) == (1, 1, 1)
