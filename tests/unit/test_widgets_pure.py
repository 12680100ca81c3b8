"""Pure parts of the widgets: log buffer, throttling, formatting, escaping, multipart, events."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest
from tornado.httputil import HTTPFile, parse_body_arguments

from energyops_ext.widgets.actions import report_html
from energyops_ext.widgets.buffer import (
    LogBuffer,
    LogLine,
    Throttle,
    esc,
    format_duration,
    format_number,
    html_table,
    log_html,
)
from energyops_ext.widgets.charts import block_series, stat_cards_html
from energyops_ext.widgets.client import (
    EnergyOpsAPIError,
    _api_error,
    encode_multipart,
    find_server,
)
from energyops_ext.widgets.events import SeqTracker, ws_url

XSS = "<img src=x onerror=alert(1)>"


def line(seq: int, level: str = "info", text: str = "") -> dict[str, object]:
    return {"seq": seq, "level": level, "stream": "stdout", "ts": "t", "text": text or f"l{seq}"}


def test_log_buffer_keeps_a_bounded_window_in_order_without_duplicates() -> None:
    buf = LogBuffer(capacity=100)
    assert buf.extend(line(i) for i in range(1, 251)) == 250
    assert buf.extend(line(i) for i in range(240, 256)) == 5  # replay overlap: only 251..255 new
    assert len(buf) == 100
    assert (buf.first_seq, buf.last_seq) == (156, 255)
    assert buf.gaps() == 0
    buf.extend([line(300)])
    assert buf.gaps() == 44


def test_log_buffer_view_filters_by_level_and_text_and_clear_keeps_position() -> None:
    buf = LogBuffer()
    buf.extend(
        [
            line(1, "info", "Solver started"),
            line(2, "error", "Infeasible"),
            line(3, "warning", "slow SOLVER step"),
            line(4, "debug", "x"),
        ]
    )
    assert [x.seq for x in buf.view(["error", "warning"])] == [2, 3]
    assert [x.seq for x in buf.view(text="solver")] == [1, 3]
    assert [x.seq for x in buf.view(limit=2)] == [3, 4]
    buf.clear()
    assert len(buf) == 0
    assert buf.extend([line(2), line(5)]) == 1  # old lines do not come back after clear
    assert "l5" in buf.to_text()


def test_log_buffer_rejects_zero_capacity() -> None:
    with pytest.raises(ValueError, match="capacity"):
        LogBuffer(0)


def test_throttle_bounds_flushes_per_second_and_loses_no_state() -> None:
    seen: list[int] = []
    counter = {"n": 0}
    lock = threading.Lock()

    def flush() -> None:
        with lock:
            seen.append(counter["n"])

    throttle = Throttle(flush, per_second=10)
    started = time.monotonic()
    while time.monotonic() - started < 1.0:
        with lock:
            counter["n"] += 1
        throttle.poke()
        time.sleep(0.0005)
    time.sleep(0.25)
    throttle.stop()
    elapsed = time.monotonic() - started
    assert 5 <= throttle.flushes <= 10 * elapsed + 1
    assert seen[-1] == counter["n"]  # the last flush saw the final state


def test_throttle_refuses_more_than_twenty_per_second() -> None:
    with pytest.raises(ValueError, match="per_second"):
        Throttle(lambda: None, per_second=50)


@pytest.mark.parametrize(
    ("value", "unit", "decimals", "text"),
    [
        (1234567.8, "MW", 0, "1,234,568 MW"),
        (3012.456, "", 2, "3,012.46"),
        (None, "MW", 0, "—"),
        (float("nan"), "", 2, "—"),
        ("n/a", "", 0, "—"),
        ("12.5", "Rs/MWh", 1, "12.5 Rs/MWh"),
    ],
)
def test_format_number(value: object, unit: str, decimals: int, text: str) -> None:
    assert format_number(value, unit, decimals) == text


@pytest.mark.parametrize(
    ("ms", "text"),
    [(None, "—"), (812, "0.8 s"), (125_000, "2 min 05 s"), (7_500_000, "2 h 05 min")],
)
def test_format_duration(ms: object, text: str) -> None:
    assert format_duration(ms) == text


def test_user_text_is_escaped_everywhere_it_becomes_html() -> None:
    assert esc(XSS) == "&lt;img src=x onerror=alert(1)&gt;"
    table = html_table([{"name": XSS, "n": 1}], [("name", XSS), ("n", "n")])
    assert "<img" not in table and table.count("&lt;img") == 2
    assert "<img" not in log_html([LogLine(1, "error", "stderr", "", XSS)])
    report = report_html(
        {
            "rows_read": 3,
            "rows_rejected": 1,
            "sheet": XSS,
            "errors": [{"row": 2, "column": XSS, "value": XSS, "rule": "x"}],
        }
    )
    assert "<img" not in report and "rejected <b>1</b>" in report
    cards = stat_cards_html({"avg_dam_price": 3012.456, "last_updated": XSS})
    assert "<img" not in cards and "3,012.46" in cards


def test_block_series_averages_prices_sums_mw_and_leaves_missing_blocks_empty() -> None:
    frame = pd.DataFrame(
        [
            {"block": 1, "dam_price": 3000.0, "scheduled_mw": 10.0},
            {"block": 1, "dam_price": 3100.0, "scheduled_mw": 5.0},
            {"block": 96, "dam_price": 9000.0, "scheduled_mw": None},
            {"block": 97, "dam_price": 1.0, "scheduled_mw": 1.0},
        ]
    )
    series = block_series(frame)
    assert series["dam_price"].shape == (96,)
    assert series["dam_price"][0] == 3050.0 and series["dam_price"][95] == 9000.0
    assert series["scheduled_mw"][0] == 15.0 and np.isnan(series["scheduled_mw"][95])
    assert np.isnan(series["dam_price"][1]) and np.isnan(series["rtm_price"]).all()
    assert np.isnan(block_series(pd.DataFrame())["dam_price"]).all()


def test_multipart_body_parses_back_with_a_real_parser() -> None:
    body, ctype = encode_multipart(
        {"kind": "model", "dry_run": True, "config": {"a": 1}, "skip": None},
        {"file": ('we"ird\r\nname.py', b"print('hi')\n")},
    )
    args: dict[str, list[bytes]] = {}
    files: dict[str, list[HTTPFile]] = {}
    parse_body_arguments(ctype, body, args, files)
    assert args == {"kind": [b"model"], "dry_run": [b"true"], "config": [b'{"a": 1}']}
    assert files["file"][0].body == b"print('hi')\n"
    assert files["file"][0].filename == "we%22ird%0D%0Aname.py"


def test_api_errors_carry_status_code_and_message() -> None:
    err = _api_error(422, b'{"error": {"status": 422, "code": "invalid_script", "message": "m"}}')
    assert (err.status, err.code, err.message) == (422, "invalid_script", "m")
    plain = _api_error(502, b"<html>bad gateway</html>")
    assert (plain.status, plain.code) == (502, "http_error")


def test_find_server_uses_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENERGYOPS_URL", "http://127.0.0.1:9/base")
    monkeypatch.setenv("ENERGYOPS_TOKEN", "abc")
    server = find_server()
    assert (server.url, server.token) == ("http://127.0.0.1:9/base/", "abc")
    assert find_server("http://h:1/", "t").url == "http://h:1/"


def test_unreachable_server_is_an_api_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from energyops_ext.widgets import EnergyOpsClient

    client = EnergyOpsClient("http://127.0.0.1:9/", "t", timeout=2)
    with pytest.raises(EnergyOpsAPIError) as caught:
        client.health()
    assert caught.value.status == 0 and caught.value.code == "unreachable"


def test_ws_url_and_seq_tracker_drop_replayed_lines() -> None:
    assert ws_url("https://h/base/") == "wss://h/base/energyops/api/events"
    assert ws_url("http://h:8888/") == "ws://h:8888/energyops/api/events"
    with pytest.raises(ValueError):
        ws_url("ftp://h/")
    tracker = SeqTracker({"run:1": 2})
    event = {"topic": "run:1", "type": "run.log", "data": {"lines": [line(2), line(3)]}}
    fresh = tracker.fresh(event)
    assert fresh is not None and [x["seq"] for x in fresh["data"]["lines"]] == [3]
    assert tracker.fresh(event) is None
    other = {"topic": "runs", "type": "run.started", "data": {}}
    assert tracker.fresh(other) is other
