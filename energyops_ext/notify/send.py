"""One message to one apprise URL, blocking: call it from a worker thread, never the loop.

Apprise's ``notify()`` answers true or false; why a send failed is in the warnings it logs
meanwhile (apprise 2 also keeps them on the result), and those become the error.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import apprise

from .channels import load_apprise

APPRISE_LOGGER = "apprise"
MAX_ERROR_CHARS = 2000
NOTIFY_TYPES = {
    "info": apprise.NotifyType.INFO,
    "warning": apprise.NotifyType.WARNING,
    "error": apprise.NotifyType.FAILURE,
    "success": apprise.NotifyType.SUCCESS,
}


@dataclass(frozen=True)
class SendResult:
    ok: bool
    error: str | None = None


Sender = Callable[[str, str, str, str, float], SendResult]


class _ThreadCapture(logging.Handler):
    """Records the apprise log messages of one thread (other sends run beside it)."""

    def __init__(self, thread: int) -> None:
        super().__init__(logging.WARNING)
        self.thread = thread
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


def send_apprise(url: str, title: str, body: str, severity: str, timeout_s: float) -> SendResult:
    """Send ``title``/``body`` to ``url``; the plugin's sockets time out after ``timeout_s``."""
    load_apprise()
    plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if plugin is None:
        return SendResult(False, "apprise does not recognise this URL")
    for name in ("socket_connect_timeout", "socket_read_timeout"):
        if hasattr(plugin, name):
            setattr(plugin, name, timeout_s)
    sender = apprise.Apprise()
    sender.add(plugin)
    logger = logging.getLogger(APPRISE_LOGGER)
    capture = _ThreadCapture(threading.get_ident())
    logger.addHandler(capture)
    try:
        result = sender.notify(
            body=body or title,
            title=title,
            notify_type=NOTIFY_TYPES.get(severity, apprise.NotifyType.INFO),
        )
    except Exception as exc:  # a plugin bug must not end the worker
        return SendResult(False, f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS])
    finally:
        logger.removeHandler(capture)
    if result:
        return SendResult(True)
    messages = _logged_warnings(result) or capture.messages
    error = "; ".join(dict.fromkeys(messages)) or "apprise reported a failure"
    return SendResult(False, error[:MAX_ERROR_CHARS])


def _logged_warnings(result: object) -> list[str]:
    """The warnings apprise 2 keeps on the result of a call (older versions: none)."""
    logs = getattr(result, "logs", None)
    if not callable(logs):
        return []
    return [
        str(entry.message)
        for entry in logs()
        if str(getattr(entry, "level", "")).upper() in ("WARNING", "ERROR", "CRITICAL")
    ]
