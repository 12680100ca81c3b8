"""A run's error lines folded into error events, and what each event becomes (pure: real
tracebacks formatted in-process, an injected clock)."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable

import pytest

from energyops_ext.runs.logs import Line, new_line
from energyops_ext.runs.run_errors import (
    ErrorEvent,
    ErrorFolder,
    ErrorThrottle,
    RunErrors,
    end_message,
)


def caught(fail: Callable[[], object]) -> list[str]:
    """The lines Python prints for the exception ``fail`` raises."""
    try:
        fail()
    except BaseException as exc:
        return "".join(traceback.format_exception(exc)).splitlines()
    raise AssertionError("no exception")


def bad_bid() -> None:
    raise ValueError("bad bid")


def chained() -> None:
    prices: dict[str, float] = {}
    try:
        prices["x"]
    except KeyError:
        bad_bid()


def caused_by_unraised() -> None:
    raise RuntimeError("pricing failed") from ValueError("bad bid")


def group() -> None:
    raise ExceptionGroup("eg", [ValueError("one"), TypeError("two")])


class Lines:
    """Numbered lines as the run's log would hold them."""

    def __init__(self) -> None:
        self.seq = 0

    def __call__(self, texts: list[str], stream: str = "stderr") -> list[Line]:
        records = []
        for text in texts:
            self.seq += 1
            records.append(new_line(self.seq, stream, text))
        return records


def fold(*batches: list[Line]) -> list[ErrorEvent]:
    folder = ErrorFolder()
    events = []
    for batch in batches:
        folder.feed(batch)
        events += folder.take()
    return events + folder.finish()


def summaries(events: list[ErrorEvent]) -> list[str]:
    return [e.summary for e in events]


def test_a_traceback_is_one_event_named_by_its_exception() -> None:
    lines = Lines()
    tb = caught(bad_bid)
    assert len(tb) >= 4 and sum(r["level"] == "error" for r in Lines()(tb)) >= 3
    events = fold(lines(["working"], "stdout"), lines(tb))
    assert events == [ErrorEvent("stderr", 2, 1 + len(tb), "ValueError: bad bid")]


@pytest.mark.parametrize(
    ("fail", "last"),
    [
        (chained, "ValueError: bad bid"),
        (caused_by_unraised, "RuntimeError: pricing failed"),
    ],
)
def test_a_chained_exception_is_one_error_named_by_the_last(
    fail: Callable[[], None], last: str
) -> None:
    events = fold(Lines()(caught(fail)))
    assert len(events) == 2 and events[1].continues
    errors = RunErrors()
    notices = errors.running(Lines()(caught(fail)), now=0.0)
    assert not notices
    assert summaries(errors.running([], now=5.0).errors) == [last]
    assert errors.events == 1


def test_an_exception_group_is_one_event() -> None:
    lines = Lines()
    events = fold(lines(caught(group)) + lines(["next"], "stderr"))
    assert summaries(events) == ["| ExceptionGroup: eg (2 sub-exceptions)"]
    # without a line after it, the group ends at the next take
    assert summaries(fold(Lines()(caught(group)))) == [events[0].summary]


def test_a_syntax_error_without_header_is_one_event() -> None:
    printed = ['  File "/run/broken.py", line 1', "    def f(:", "          ^"]
    events = fold(Lines()([*printed, "SyntaxError: invalid syntax"]))
    assert summaries(events) == ["SyntaxError: invalid syntax"]


def test_a_logged_exception_is_one_error(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("model")
    try:
        bad_bid()
    except ValueError:
        logger.exception("could not price the day")
    texts = [f"ERROR:model:{caplog.records[0].getMessage()}", *caught(bad_bid)]
    errors = RunErrors()
    errors.running(Lines()(texts), now=0.0)
    assert summaries(errors.running([], now=2.0).errors) == ["ValueError: bad bid"]


def test_lines_of_other_streams_and_batches_do_not_cut_a_traceback() -> None:
    lines = Lines()
    tb = caught(bad_bid)
    first = lines(tb[:2]) + lines(["progress: 10%"], "stdout")
    second = lines(tb[2:])
    folder = ErrorFolder()
    folder.feed(first)
    assert folder.take() == []  # still open: its exception line has not come
    folder.feed(first + second)  # a batch written again: its lines are skipped
    assert summaries(folder.take()) == ["ValueError: bad bid"]
    assert folder.finish() == []


def test_other_error_lines_are_one_event_each() -> None:
    events = fold(Lines()(["error 1", "fine", "error 2", ""], "stdout"))
    assert summaries(events) == ["error 1", "error 2"]


def test_a_traceback_the_output_ends_in_is_an_event() -> None:
    tb = caught(bad_bid)
    assert summaries(fold(Lines()(tb[:3]))) == [tb[2]]


def test_a_notebook_cells_failure_and_traceback_are_one_event() -> None:
    lines = Lines()
    cell = [
        "[cell 3] failed: KeyboardInterrupt: ",
        "[cell 3] ---------------------------------------------------------------------------",
        "[cell 3] KeyboardInterrupt                         Traceback (most recent call last)",
        "[cell 3] Cell In[3], line 2",
        "[cell 3] ----> 2 raise KeyboardInterrupt",
        "[cell 3] KeyboardInterrupt: ",
    ]
    printed = [f"[cell 2] {line}" for line in caught(bad_bid)]
    events = fold(lines(["[cell 1] one"], "stdout"), lines(printed), lines(cell))
    assert summaries(events) == ["[cell 2] ValueError: bad bid", cell[0]]


def test_the_throttle_sends_five_a_window_then_a_summary() -> None:
    throttle = ErrorThrottle()
    decisions = [throttle.offer(0.0 + i) for i in range(8)]
    assert [d[0] for d in decisions] == [True] * 5 + [False] * 3
    assert not throttle.due(59.0) and throttle.tick(59.0) == 0
    assert throttle.offer(61.0) == (True, 3)  # new window: summary of the 3 held back
    throttle.offer(62.0)
    assert throttle.close() == 0


def test_the_throttle_summarizes_a_closed_window_without_a_new_error() -> None:
    throttle = ErrorThrottle(per_window=1, window_s=10.0)
    throttle.offer(0.0)
    throttle.offer(1.0)
    assert throttle.due(10.0) and throttle.tick(10.0) == 1
    assert not throttle.due(100.0)
    assert throttle.offer(100.0) == (True, 0)


def many_errors(errors: RunErrors, lines: Lines, count: int, now: float) -> None:
    """``count`` tracebacks, one after the other (traceback.print_exc() in a loop)."""
    for i in range(count):
        errors.running(lines([*caught(bad_bid)[:-1], f"KeyError: 'bid {i}'"]), now)


def test_errors_while_running_wait_the_hold_then_pass_the_throttle() -> None:
    errors, lines = RunErrors(hold_s=2.0), Lines()
    many_errors(errors, lines, 8, now=0.0)
    assert not errors.waiting(1.9) and not errors.running([], 1.9)
    assert errors.waiting(2.0)
    notices = errors.running([], 2.0)
    assert summaries(notices.errors) == [f"KeyError: 'bid {i}'" for i in range(5)]
    assert notices.more == 0 and not errors.waiting(30.0)
    assert errors.waiting(62.0)  # the window has closed: its summary is due
    assert errors.running([], 62.0).more == 3


def test_a_failed_run_names_the_error_it_ended_on_and_counts_the_untold() -> None:
    errors, lines = RunErrors(hold_s=2.0), Lines()
    many_errors(errors, lines, 7, now=0.0)
    errors.running([], 2.0)  # 5 told, 2 held back by the throttle
    many_errors(errors, lines, 2, now=3.0)  # the run ends on these
    ending = errors.end(3.5, told_by_status=True)
    assert not ending.notices
    assert (ending.last_error, ending.untold) == ("KeyError: 'bid 1'", 3)
    message = end_message("failed", "exit code 1", ending.last_error, ending.untold)
    assert message == "exit code 1: KeyError: 'bid 1'; 3 more errors (see the run's log)"


def test_a_run_that_ends_well_tells_its_held_errors() -> None:
    errors, lines = RunErrors(hold_s=2.0), Lines()
    many_errors(errors, lines, 6, now=0.0)
    ending = errors.end(0.5, told_by_status=False)
    assert len(ending.notices.errors) == 5 and ending.notices.more == 1
    assert ending.last_error is None


@pytest.mark.parametrize(
    ("status", "reason", "last", "untold", "message"),
    [
        ("failed", "exit code 3", None, 0, "exit code 3"),
        ("failed", "exit code 1", "ValueError: bad bid", 0, "exit code 1: ValueError: bad bid"),
        (
            "timed_out",
            "timed out after 5 s",
            "KeyError: 'x'",
            1,
            "timed out after 5 s; last error: KeyError: 'x'; 1 more error (see the run's log)",
        ),
    ],
)
def test_end_message(status: str, reason: str, last: str | None, untold: int, message: str) -> None:
    assert end_message(status, reason, last, untold) == message


def test_a_batch_without_error_lines_is_skipped_unless_a_traceback_is_open() -> None:
    lines = Lines()
    tb = [
        "Traceback (most recent call last):",
        '  File "/run/model.py", line 3, in <module>',
        "    raise KeyboardInterrupt",
        "KeyboardInterrupt",
    ]
    quiet = lines(["quiet", "still quiet"], "stdout")
    header, rest = lines(tb[:1]), lines(tb[1:])
    assert [r["level"] for r in header] == ["error"]
    assert all(r["level"] != "error" for r in rest)  # frames, then 'KeyboardInterrupt'
    folder = ErrorFolder()
    folder.feed(quiet, any_error=False)
    folder.feed(header)
    folder.feed(rest, any_error=False)
    assert summaries(folder.take()) == ["KeyboardInterrupt"]
