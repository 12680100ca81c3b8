"""The feed rows of a run's end and errors: one activity when it ends (a kill's too: a kill
request writes none), one notification for an end worth telling, which names the last error
(``run_errors.py`` decides), and the error notifications due while it runs."""

from __future__ import annotations

from sqlalchemy.orm import Session

from ..db.models import Activity, Notification, Run
from ..feed import add_activity, add_notification
from .run_errors import Ending, Notices, end_message

# the ends that get a notification of their own, and its severity
NOTIFY_STATUS = {"failed": "error", "killed": "warning", "timed_out": "error", "lost": "warning"}


def end_title(run: Run, script_title: str | None = None) -> str:
    """``Run 12 of dmo.py v3 failed``."""
    script = script_title or f"{run.script.name} v{run.script.version}"
    return f"Run {run.id} of {script} {run.status.replace('_', ' ')}"


def end_activity(session: Session, run: Run, title: str, user: str | None) -> Activity:
    return add_activity(
        session,
        type="run",
        action=run.status,
        title=title,
        entity_type="run",
        entity_id=run.id,
        status=run.status,
        user=user,
    )


def end_notification(
    session: Session, run: Run, title: str, reason: str, ending: Ending
) -> Notification | None:
    """The one notification of a run that failed, was killed or timed out (None for one
    that succeeded): ``exit code 1: ValueError: bad bid``."""
    severity = NOTIFY_STATUS.get(run.status)
    if severity is None:
        return None
    return add_notification(
        session,
        type=f"run_{run.status}",
        category="run",
        severity=severity,
        title=title,
        message=end_message(run.status, reason, ending.last_error, ending.untold),
        entity_type="run",
        entity_id=run.id,
        user=run.requested_by,
    )


def error_notifications(
    session: Session, run_id: int, script_title: str, notices: Notices
) -> list[Notification]:
    """One notification per error event, then one for the errors the throttle held back."""
    title = f"Run {run_id} of {script_title}"

    def note(title: str, message: str) -> Notification:
        return add_notification(
            session,
            type="run_error",
            category="run",
            severity="error",
            title=title,
            message=message,
            entity_type="run",
            entity_id=run_id,
        )

    notes = [note(f"{title}: error", event.summary) for event in notices.errors]
    if notices.more:
        more = f"{notices.more} more errors"
        notes.append(note(f"{title}: {more}", f"{more} (see the run's log)"))
    return notes
