"""Pure parts of the run panels: log lines put back in seq order, the run state store shared by
the progress bar and the runs tables, report lines, the delete question."""

from __future__ import annotations

import random
from typing import Any

import pytest

from energyops_ext.widgets.controls import delete_button_text, delete_prompt_html, last_runs
from energyops_ext.widgets.events import ContiguousLines, EventStream
from energyops_ext.widgets.logview import is_marker
from energyops_ext.widgets.runstate import RunStates, event_fields, shown_progress


def line(seq: int) -> dict[str, Any]:
    return {"seq": seq, "level": "info", "stream": "stdout", "ts": "", "text": f"l{seq}"}


def test_contiguous_lines_orders_overlapping_sources_each_line_once() -> None:
    rng = random.Random(7)
    page = [line(s) for s in range(1, 301)]  # the REST read
    replay = [line(s) for s in range(250, 801)]  # since=250, overlapping the read
    live = [line(s) for s in range(700, 1001)]  # live, overlapping the replay
    pieces = [page[i : i + 50] for i in range(0, 300, 50)]
    pieces += [replay[i : i + 37] for i in range(0, len(replay), 37)]
    pieces += [live[i : i + 11] for i in range(0, len(live), 11)]
    rng.shuffle(pieces)
    feed = ContiguousLines()
    out: list[int] = []
    for piece in pieces:
        out.extend(int(x["seq"]) for x in feed.add(piece))
    assert out == list(range(1, 1001))
    assert feed.gap() is None and feed.waiting == 0


def test_contiguous_lines_holds_lines_past_a_gap_until_it_is_filled_or_skipped() -> None:
    feed = ContiguousLines(after=10)
    assert feed.add([line(5), line(11), line(12)]) == [line(11), line(12)]
    assert feed.add([line(15), line(16)]) == []
    assert feed.gap() == (13, 14)
    assert [x["seq"] for x in feed.add([line(14), line(13)])] == [13, 14, 15, 16]
    feed.add([line(20)])
    assert feed.gap() == (17, 19)
    assert [x["seq"] for x in feed.skip(19)] == [20]
    assert feed.skipped == 3 and feed.gap() is None


def run_event(kind: str, run_id: int, **data: Any) -> dict[str, Any]:
    topic = "runs" if kind in ("run.queued", "run.started", "run.finished") else f"run:{run_id}"
    key = "run_id" if kind in ("run.progress", "run.finished") else "id"
    return {"topic": topic, "type": kind, "data": {key: run_id, **data}}


def test_run_states_events_win_over_an_older_read_and_status_never_goes_back() -> None:
    states = RunStates()
    changed: list[int] = []
    states.add_listener(changed.append)
    mark = states.reading()
    # while the read was on its way, the run reported 55 % and then finished
    states.apply(run_event("run.progress", 7, progress=55.0, objective_value=12.5))
    states.apply(
        run_event(
            "run.finished",
            7,
            status="succeeded",
            exit_code=0,
            runtime_ms=900,
            objective_value=13.0,
            run={"id": 7, "script_id": 3, "status": "succeeded", "progress": 80.0},
        )
    )
    states.merge([{"id": 7, "script_id": 3, "status": "running", "progress": 40.0}], mark)
    state = states.get(7)
    assert state["status"] == "succeeded" and state["progress"] == 80.0
    assert state["objective_value"] == 13.0 and state["script_id"] == 3
    assert shown_progress(state) == 100
    assert changed == [7, 7]  # the read changed nothing

    # a read begun after the events is newer: it is taken
    mark = states.reading()
    states.merge([{"id": 7, "results_count": 96}], mark)
    assert states.get(7)["results_count"] == 96
    # a late, older status event does not move a finished run back
    states.apply(run_event("run.status", 7, status="running"))
    assert states.get(7)["status"] == "succeeded"


def test_run_states_fill_fields_no_event_told_and_ignore_other_events() -> None:
    states = RunStates()
    states.apply(run_event("run.progress", 9, progress=30))
    mark = states.reading()
    # a read after the event that has not stored its figure yet: the progress stays
    states.merge([{"id": 9, "status": "running", "progress": 10, "script_name": "m"}], mark)
    assert states.get(9) == {"id": 9, "status": "running", "progress": 30, "script_name": "m"}
    states.merge([{"id": 9, "progress": 35}], states.reading())
    assert states.get(9)["progress"] == 35
    assert states.apply({"topic": "runs", "type": "kpi.update", "data": {"id": 9}}) is None
    assert states.apply({"topic": "run:9", "type": "run.log", "data": {"lines": []}}) is None
    assert event_fields(run_event("run.finished", 4, status="failed", run={"id": 4})) == {
        "status": "failed",
        "id": 4,
    }


@pytest.mark.parametrize(
    ("state", "shown"),
    [
        ({}, 0),
        ({"status": "running", "progress": 42.7}, 42),
        ({"status": "succeeded", "progress": 80}, 100),
        ({"status": "failed", "progress": 80}, 80),
        ({"status": "running", "progress": None}, 0),
        ({"status": "running", "progress": "x"}, 0),
    ],
)
def test_shown_progress(state: dict[str, Any], shown: int) -> None:
    assert shown_progress(state) == shown


@pytest.mark.parametrize(
    ("text", "marker"),
    [
        ('::energyops {"progress": 40}', True),
        ('  ::energyops {"objective": 1}', True),
        ('[cell 3] ::energyops {"progress": 40}', True),
        ("Progress: 40%", False),
        ("the ::energyops marker is documented", False),
        ("::energyopsx", False),
    ],
)
def test_is_marker(text: str, marker: bool) -> None:
    assert is_marker(text) is marker


def test_delete_question_says_how_many_runs_go_with_the_script() -> None:
    script = {"name": "<b>dmo</b>", "version": 2}
    html = delete_prompt_html(script, 3, 1)
    assert "&lt;b&gt;dmo&lt;/b&gt; v2" in html and "<b>dmo</b>" not in html
    assert "<b class='eo-delete-runs'>3</b> runs, with their logs" in html
    assert "1 of them is still active and will be killed" in html
    assert 'data-runs="3"' in html
    assert "It has no runs." in delete_prompt_html(script, 0, 0)
    assert "1</b> run, with" in delete_prompt_html(script, 1, 0)
    assert delete_button_text(0) == "Delete script"
    assert delete_button_text(1) == "Delete script and 1 run"
    assert delete_button_text(12) == "Delete script and 12 runs"


def test_last_runs_are_the_newest_run_of_each_script() -> None:
    states = RunStates()
    mark = states.reading()
    states.merge(
        [
            {"id": 1, "script_id": 10, "status": "succeeded"},
            {"id": 4, "script_id": 10, "status": "failed"},
            {"id": 2, "script_id": 11, "status": "succeeded"},
        ],
        mark,
    )
    states.apply(run_event("run.queued", 5, script_id=11, status="queued"))
    assert last_runs(states, [10, 11, 12]) == {10: "failed", 11: "queued"}
    states.apply(run_event("run.started", 5, status="running"))
    assert last_runs(states, [11]) == {11: "running"}


def test_stream_subscriptions_are_counted_per_topic() -> None:
    stream = EventStream("http://127.0.0.1:9/", "t")  # never started: frames go nowhere
    stream.subscribe(["run:1", "runs"])
    stream.subscribe(["run:1"])
    stream.unsubscribe(["run:1"])
    assert stream.topics == {"run:1", "runs"}
    stream.unsubscribe(["run:1"])
    assert stream.topics == {"runs"}
    stream.unsubscribe(["run:1"])  # one too many: nothing to undo
    assert stream.topics == {"runs"}
    stream.subscribe(["run:2"], since={"run:2": 40})
    assert stream.seq.last["run:2"] == 40
    stream.subscribe(["run:2"], since={"run:2": 10})
    assert stream.seq.last["run:2"] == 40  # never moves back
