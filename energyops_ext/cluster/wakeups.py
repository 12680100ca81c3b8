"""Wake-ups between servers: NOTIFY on PostgreSQL, nothing on SQLite (where servers poll).

A wake-up only says "look again"; what to do is always read from the database, so a lost
notification costs latency, never a run, a kill or a line. NOTIFY is delivered when the
sending transaction commits, so a wake-up sent with a change never arrives before it.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from .listen import notify

QUEUE = "energyops_queue"  # a run was queued: servers with a free slot claim
CONTROL = "energyops_control"  # "kill <run id>": the owner reads the request on the run
LINES = "energyops_lines"  # "<run id> <last seq>": lines were committed
EVENTS = "energyops_events"  # one relayed event as JSON
CHANNELS = (QUEUE, CONTROL, LINES, EVENTS)


def wake(session: Session, channel: str, payload: str = "") -> None:
    """Send ``payload`` on ``channel`` when ``session`` commits (PostgreSQL only)."""
    if session.get_bind().dialect.name == "postgresql":
        notify(session, channel, payload)
