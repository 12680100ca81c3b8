"""A run's errors as its notifications should tell them.

A Python traceback is five or more lines, several of them error lines; it is one error.
``ErrorFolder`` folds a run's lines into *error events*: a traceback (with the exceptions
chained to it) is one event named by its last line (``ValueError: bad bid``); any other error
line is an event of its own.

``RunErrors`` decides what each event becomes:

- while the run goes on, an event is notified once the run has kept running ``hold_s`` after
  it, at most ``ErrorThrottle.per_window`` a window, the rest counted in one "N more errors";
- an event the run ends on (still held when it ends) is no notification of its own: a run
  that ends failed, killed or timed out gets one notification, which names its last error.

Pure and single-threaded: the engine calls it under the run's flush lock with the clock's
``now`` (monotonic seconds).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from .logs import Line

ERROR_HOLD_S = 2.0  # longer than a Python process takes to exit after its last traceback
TRACEBACK_HEADERS = ("Traceback (most recent call last):", "Exception Group Traceback")
CHAIN_SENTENCES = (
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)
CELL_FAILED = "failed: "  # nbrun.py: "[cell 3] failed: ValueError: bad bid", then its traceback
_SUMMARY_LIMIT = 500


@dataclass(frozen=True)
class ErrorEvent:
    """One error of a run: the lines ``first_seq``..``last_seq`` of ``stream``."""

    stream: str
    first_seq: int
    last_seq: int
    summary: str  # a traceback's exception line, else the error line itself
    # the previous event of its stream goes on in this one: an exception chained to it, or
    # the traceback an error line introduced (logging.exception)
    continues: bool = False

    def joined(self, later: ErrorEvent) -> ErrorEvent:
        return replace(self, last_seq=later.last_seq, summary=later.summary)


def split_label(text: str) -> tuple[str, str]:
    """A notebook run's ``[cell 3] `` label and the line it labels."""
    if text.startswith("[") and (end := text.find("] ")) > 0:
        label = text[: end + 2]
        if label.startswith(("[cell ", "[parameters", "[setup")):
            return label, text[end + 2 :]
    return "", text


def _is_header(body: str) -> bool:
    return body.lstrip(" +|").startswith(TRACEBACK_HEADERS)


def _looks_like_exception(body: str) -> bool:
    """``ValueError: bad bid``, ``KeyboardInterrupt``, ``| ExceptionGroup: eg (2 ...)``."""
    name = body.strip().lstrip("| ").partition(":")[0]
    plain = name.replace(".", "").replace("_", "")
    return plain.isalnum() and name.rpartition(".")[2][:1].isupper()


@dataclass
class _Block:
    """A traceback being read, line by line."""

    stream: str
    label: str  # a notebook cell's label, which every line of the block carries
    first_seq: int
    continues: bool
    # python: a traceback, ended by its exception line; group: an exception group's, every
    # line of it indented; cell: a notebook cell's failure, then its traceback (nbrun.py)
    kind: str
    summary: str | None = None
    last_seq: int = 0

    def event(self, fallback: str) -> ErrorEvent:
        summary = self.summary or fallback
        return ErrorEvent(self.stream, self.first_seq, self.last_seq, summary, self.continues)


def _place(block: _Block, label: str, body: str) -> str:
    """Where a line stands to an open traceback: ``inside`` it, its ``last`` line (the
    exception), or ``outside`` it (another cell's line, or what follows a group's)."""
    if label != block.label:
        return "outside"
    if block.kind == "cell":
        return "inside"
    indented = body.startswith((" ", "\t"))
    if block.kind == "group":
        return "inside" if indented else "outside"
    if not body or indented or _is_header(body) or body in CHAIN_SENTENCES:
        return "inside"
    return "last"


class ErrorFolder:
    """Lines in (every stream but ``system``), error events out, in the order they ended.

    A traceback stays open until its exception line (an exception group's: until a line that
    is not indented, or ``take``); a line fed twice (a batch written again) is skipped."""

    def __init__(self) -> None:
        self._open: dict[str, _Block] = {}
        self._last_text: dict[str, str] = {}
        self._line_ends: dict[str, int] = {}  # the seq of each stream's last one-line event
        self._ready: list[ErrorEvent] = []
        self._seen = 0

    def feed(self, records: Sequence[Line], any_error: bool = True) -> None:
        """``records`` in seq order, as a batch holds them. ``any_error=False``: the caller
        knows none of them is an error line, and a loud run's batch is skipped at once (a
        traceback still open reads them all)."""
        if not records or records[-1]["seq"] <= self._seen:
            return
        if not any_error and not self._open:
            self._seen = records[-1]["seq"]
            return
        start = 0
        if records[0]["seq"] <= self._seen:  # a batch written again: skip what was read
            start = bisect_right(records, self._seen, key=lambda r: r["seq"])
        self._seen = records[-1]["seq"]
        opened = self._open
        for index in range(start, len(records)):
            record = records[index]
            text = record["text"]
            # the fast path of a loud run: only error lines, open tracebacks and a notebook's
            # labelled lines ("[cell 3] failed: KeyboardInterrupt" is no error line) matter
            error = record["level"] == "error"
            if (error or opened or text[:1] == "[") and record["stream"] != "system":
                self._line(record["stream"], record["seq"], text, error)

    def take(self) -> list[ErrorEvent]:
        """The events ended so far; an exception group whose exception line is in ends here
        (it has no last line of its own)."""
        for stream, block in list(self._open.items()):
            if block.kind == "group" and block.summary is not None:
                self._close(stream, block)
        ready, self._ready = self._ready, []
        return ready

    def finish(self) -> list[ErrorEvent]:
        """The output has ended: an open traceback ends with it."""
        for stream, block in list(self._open.items()):
            self._close(stream, block)
        return self.take()

    def _line(self, stream: str, seq: int, text: str, error: bool) -> None:
        label, body = split_label(text)
        block = self._open.get(stream)
        if block is not None:
            place = _place(block, label, body)
            if place != "outside":
                block.last_seq = seq
                self._last_text[stream] = text
                if block.kind == "group" and not block.summary and _looks_like_exception(body):
                    block.summary = text.strip()[:_SUMMARY_LIMIT]
                if place == "last":
                    block.summary = text[:_SUMMARY_LIMIT]
                    self._close(stream, block)
                return
            self._close(stream, block)
        if label and body.startswith(CELL_FAILED):
            block = _Block(stream, label, seq, False, "cell", text[:_SUMMARY_LIMIT], seq)
        elif _is_header(body) or body in CHAIN_SENTENCES:
            continues = body in CHAIN_SENTENCES or self._line_ends.get(stream) == seq - 1
            kind = "group" if body.startswith((" ", "+")) else "python"
            block = _Block(stream, label, seq, continues, kind, last_seq=seq)
        else:
            if error:
                self._line_ends[stream] = seq
                self._emit(ErrorEvent(stream, seq, seq, text[:_SUMMARY_LIMIT]))
            return
        self._open[stream] = block
        self._last_text[stream] = text

    def _close(self, stream: str, block: _Block) -> None:
        self._open.pop(stream, None)
        self._emit(block.event(self._last_text.get(stream, "")[:_SUMMARY_LIMIT]))

    def _emit(self, event: ErrorEvent) -> None:
        self._ready.append(event)


# --- the throttle ---


@dataclass
class ErrorThrottle:
    """At most ``per_window`` error notifications per window; the rest are counted and
    summarized once ("N more errors") when the window has closed or the run ends."""

    per_window: int = 5
    window_s: float = 60.0
    _window_start: float | None = None
    _sent: int = 0
    suppressed: int = 0

    def offer(self, now: float) -> tuple[bool, int]:
        """(notify this error?, count of suppressed errors to summarize now)."""
        summary = 0
        if self._window_start is None or now - self._window_start >= self.window_s:
            summary, self.suppressed = self.suppressed, 0
            self._window_start, self._sent = now, 0
        if self._sent < self.per_window:
            self._sent += 1
            return True, summary
        self.suppressed += 1
        return False, summary

    def due(self, now: float) -> bool:
        """A window with suppressed errors has closed: ``tick`` has a summary to give."""
        start = self._window_start
        return bool(self.suppressed) and start is not None and now - start >= self.window_s

    def tick(self, now: float) -> int:
        """The count to summarize now that a window has closed (0 while it is open); the
        next error opens a new window."""
        if not self.due(now):
            return 0
        summary, self.suppressed = self.suppressed, 0
        self._window_start, self._sent = None, 0
        return summary

    def close(self) -> int:
        summary, self.suppressed = self.suppressed, 0
        return summary


# --- what the events become ---


@dataclass
class Notices:
    """Error notifications to write now: one per event, then "``more`` more errors"."""

    errors: list[ErrorEvent] = field(default_factory=list)
    more: int = 0

    def __bool__(self) -> bool:
        return bool(self.errors or self.more)


@dataclass(frozen=True)
class Ending:
    """What a run's end adds: error notifications still due (a run that succeeded), or, for
    the one notification of a run that failed, its last error and how many errors went
    untold."""

    notices: Notices
    last_error: str | None = None
    untold: int = 0


class RunErrors:
    """The error notifications of one run (see the module's docstring for the rule)."""

    def __init__(self, hold_s: float = ERROR_HOLD_S, throttle: ErrorThrottle | None = None):
        self.hold_s = hold_s
        self.throttle = throttle or ErrorThrottle()
        self.folder = ErrorFolder()
        self.events = 0
        self.last: ErrorEvent | None = None
        self._held: list[tuple[float, ErrorEvent]] = []

    def running(self, records: Sequence[Line], now: float, any_error: bool = True) -> Notices:
        """Fold a batch of lines in (``any_error``: see ``ErrorFolder.feed``); the
        notifications due now."""
        self.folder.feed(records, any_error)
        self._hold(self.folder.take(), now)
        due = [event for since, event in self._held if now - since >= self.hold_s]
        self._held = self._held[len(due) :]
        return self._throttled(due, now)

    def waiting(self, now: float) -> bool:
        """Something is due although no line came: a held error, or a window's summary."""
        held_due = bool(self._held) and now - self._held[0][0] >= self.hold_s
        return held_due or self.throttle.due(now)

    def end(self, now: float, *, told_by_status: bool) -> Ending:
        """The run has ended. ``told_by_status``: it gets a notification of its own (failed,
        killed, timed out), which takes in the errors it ended on."""
        self._hold(self.folder.finish(), now)
        held, self._held = [event for _since, event in self._held], []
        if told_by_status:
            untold = self.throttle.close() + max(0, len(held) - 1)
            last = self.last.summary if self.last is not None else None
            return Ending(Notices(), last, untold)
        notices = self._throttled(held, now)
        notices.more += self.throttle.close()
        return Ending(notices)

    def _hold(self, events: list[ErrorEvent], now: float) -> None:
        for event in events:
            if event.continues and self._held and self._held[-1][1].stream == event.stream:
                since, previous = self._held[-1]
                event = previous.joined(event)
                self._held[-1] = (since, event)
            else:
                self._held.append((now, event))
                self.events += 1
            self.last = event

    def _throttled(self, events: list[ErrorEvent], now: float) -> Notices:
        notices = Notices(more=self.throttle.tick(now))
        for event in events:
            notify, rolled = self.throttle.offer(now)
            notices.more += rolled
            if notify:
                notices.errors.append(event)
        return notices


def end_message(status: str, reason: str, last_error: str | None, untold: int) -> str:
    """The message of a run's end notification: ``exit code 1: ValueError: bad bid``."""
    message = reason
    if last_error:
        message += f": {last_error}" if status == "failed" else f"; last error: {last_error}"
    if untold:
        message += f"; {untold} more error{'s' if untold != 1 else ''} (see the run's log)"
    return message
