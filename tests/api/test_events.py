"""The event socket: auth, protocol errors, feeds, dashboard pushes, jupyter_events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError
from tornado.websocket import WebSocketClientConnection

from energyops_ext.events import DASHBOARD, DATASETS, NOTIFICATIONS, RUNS, Event
from energyops_ext.events.jupyter import DATASET_SCHEMA, NOTIFICATION_SCHEMA, RUN_SCHEMA
from energyops_ext.feed import add_notification, announce
from energyops_ext.services import Services

from .conftest import OPERATOR_TOKEN, Fetch, assert_error
from .wsclient import EventsClient

WsFetch = Callable[..., Awaitable[WebSocketClientConnection]]


@pytest.fixture
def energyops_config() -> dict[str, Any]:
    return {"kpi_interval_s": 0.2, "health_interval_s": 0.3}


@pytest.fixture
def connect(services: Services, jp_ws_fetch: WsFetch) -> Iterator[Callable[..., Awaitable[Any]]]:
    clients: list[EventsClient] = []

    async def open_client(**kwargs: Any) -> EventsClient:
        client = EventsClient(await jp_ws_fetch("energyops", "api", "events", **kwargs))
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()


async def test_socket_needs_token_and_upgrade(
    api: Fetch, connect: Callable[..., Awaitable[EventsClient]]
) -> None:
    with pytest.raises(HTTPClientError) as refused:
        await connect(headers={"Authorization": ""})
    assert refused.value.code == 403
    with pytest.raises(HTTPClientError) as wrong:
        await connect(headers={"Authorization": "token not-the-token"})
    assert wrong.value.code == 403
    assert_error(await api("GET", "events"), 400, "websocket_required", "WebSocket upgrade")
    operator = await connect(headers={"Authorization": f"token {OPERATOR_TOKEN}"})
    await operator.send({"op": "ping"})
    assert await operator.recv() == {"topic": None, "type": "pong", "data": {}}


@pytest.mark.parametrize(
    ("frame", "code", "fragment"),
    [
        ("not json", "invalid_json", "not valid JSON"),
        ("[1, 2]", "bad_frame", "JSON object"),
        ({"op": "dance"}, "unknown_op", "unknown op 'dance'"),
        ({"op": "subscribe"}, "bad_topics", "non-empty list"),
        ({"op": "subscribe", "topics": "runs"}, "bad_topics", "non-empty list"),
        ({"op": "subscribe", "topics": ["run:abc"]}, "bad_topic", "unknown topic 'run:abc'"),
        ({"op": "unsubscribe", "topics": ["weather"]}, "bad_topic", "unknown topic 'weather'"),
        ({"op": "subscribe", "topics": ["run:1"], "since": {"run:1": -1}}, "bad_since", ">= 0"),
        ({"op": "subscribe", "topics": ["run:1"], "since": [1]}, "bad_since", "object"),
        ({"op": "subscribe", "topics": ["runs"], "since": {"run:1": 5}}, "bad_since", "not in"),
        ({"op": "subscribe", "topics": ["runs"], "since": {"runs": 5}}, "no_replay", "runs"),
    ],
)
async def test_bad_frames_get_error_frames_and_the_socket_stays(
    connect: Callable[..., Awaitable[EventsClient]], frame: Any, code: str, fragment: str
) -> None:
    client = await connect()
    await client.send(frame)
    error = await client.recv()
    assert error is not None and error["type"] == "error", error
    assert error["data"]["code"] == code
    assert fragment in error["data"]["message"]
    await client.send({"op": "ping"})
    assert (await client.recv() or {})["type"] == "pong"
    assert await client.subscribe(RUNS) == []


async def test_feed_events_reach_subscribers_until_they_unsubscribe(
    services: Services, connect: Callable[..., Awaitable[EventsClient]], jp_ws_fetch: WsFetch
) -> None:
    bus = await jp_ws_fetch("api", "events", "subscribe")
    client = await connect()
    other = await connect()
    await client.subscribe(DATASETS, NOTIFICATIONS, RUNS)
    await other.subscribe(RUNS)

    upload = {"kind": "market_snapshot", "upload_id": 7, "rows_inserted": 96}
    await asyncio.to_thread(services.hub.publish, Event(DATASETS, "dataset.uploaded", upload))
    assert await client.recv() == {"topic": DATASETS, "type": "dataset.uploaded", "data": upload}

    def notify(session: Any) -> Any:
        return add_notification(
            session,
            type="run_failed",
            category="run",
            severity="error",
            title="Run 3 failed",
            message="exit code 1",
        )

    note = await services.db.write(notify)
    announce(services.hub, notifications=[note])
    frame = await client.recv()
    assert frame is not None and frame["type"] == "notification.new"
    assert frame["data"]["title"] == "Run 3 failed" and frame["data"]["is_read"] is False

    finished = {"run_id": 3, "status": "failed", "exit_code": 1}
    services.hub.publish(Event(RUNS, "run.finished", finished))
    for socket in (client, other):
        assert await socket.recv() == {"topic": RUNS, "type": "run.finished", "data": finished}

    # the same lifecycle events arrive on jupyter_server's own event bus
    received = []
    for _ in range(3):
        message = await asyncio.wait_for(bus.read_message(), 5)
        assert message is not None
        received.append(json.loads(message))
    by_schema = {event["schema_id"]: event for event in received}
    assert set(by_schema) == {DATASET_SCHEMA, NOTIFICATION_SCHEMA, RUN_SCHEMA}
    assert by_schema[RUN_SCHEMA]["type"] == "run.finished"
    assert by_schema[RUN_SCHEMA]["data"] == finished
    assert by_schema[DATASET_SCHEMA]["data"] == upload
    bus.close()

    await client.send({"op": "unsubscribe", "topics": [RUNS, DATASETS]})
    assert (await client.recv() or {})["type"] == "unsubscribed"
    services.hub.publish(Event(RUNS, "run.queued", {"run_id": 4}))
    services.hub.publish(Event(NOTIFICATIONS, "activity.new", {"id": 1}))
    assert (await client.recv() or {})["type"] == "activity.new"
    assert (await other.recv() or {})["type"] == "run.queued"


async def test_dashboard_pushes_only_while_someone_listens(
    services: Services, connect: Callable[..., Awaitable[EventsClient]], jp_serverapp: Any
) -> None:
    pusher = services.dashboard
    assert pusher is not None and pusher.running
    await asyncio.sleep(0.5)
    assert pusher.pushes == 0, "pushed with nobody listening"

    client = await connect()
    await client.subscribe(DASHBOARD)
    frames = await client.until(lambda f: f["type"] == "health.update", within=5)
    frames += await client.until(lambda f: f["type"] == "kpi.update", within=5)
    kinds = [f["type"] for f in frames]
    assert kinds.count("kpi.update") >= 2 and kinds.count("health.update") >= 1, kinds
    kpi = next(f["data"] for f in frames if f["type"] == "kpi.update")
    assert kpi["runs"] == {"running": 0, "queued": 0, "finished_24h": {}}
    assert kpi["market"] is None and kpi["uploads_24h"] == 0
    assert kpi["unread_notifications"] == 0
    health = next(f["data"] for f in frames if f["type"] == "health.update")
    assert health["database"]["reachable"] is True and health["status"] == "ok"

    await client.send({"op": "unsubscribe", "topics": [DASHBOARD]})
    await client.until(lambda f: f["type"] == "unsubscribed")
    count = pusher.pushes
    await asyncio.sleep(0.7)
    assert pusher.pushes == count
    await client.send({"op": "ping"})
    assert (await client.recv() or {})["type"] == "pong", "a push arrived after unsubscribe"

    await jp_serverapp.extension_manager.stop_all_extensions()
    assert not pusher.running
    names = {task.get_name() for task in asyncio.all_tasks()}
    assert "energyops-dashboard-pushes" not in names
    assert await client.recv() is None
    assert client.conn.close_code == 1001


@pytest.mark.parametrize("energyops_config", [{"ws_ping_interval_s": 0.2}])
async def test_a_dead_connection_is_dropped_and_its_subscriptions_freed(
    services: Services, connect: Callable[..., Awaitable[EventsClient]]
) -> None:
    dead, alive = await connect(), await connect()
    for client in (dead, alive):
        await client.subscribe(RUNS)
    # two frames nobody reads fill the client's one-message queue and stop its frame loop,
    # so it no longer answers the server's pings, like a peer that vanished
    for n in range(2):
        services.hub.publish(Event(RUNS, "run.queued", {"run_id": n}))
    assert [(await alive.recv() or {})["data"] for _ in range(2)] == [{"run_id": 0}, {"run_id": 1}]
    for _ in range(150):
        if services.hub.listeners_of(RUNS) == 1:
            break
        await asyncio.sleep(0.1)
    assert services.hub.listeners_of(RUNS) == 1 and services.hub.connections == 1
    await alive.send({"op": "ping"})
    assert (await alive.recv() or {})["type"] == "pong"
