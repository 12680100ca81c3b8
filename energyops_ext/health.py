"""The health report: what GET /health answers and what the dashboard topic broadcasts."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .db import current_revision, head_revision
from .redact import mask_url

if TYPE_CHECKING:
    from .services import Services

# What a read-only user (an operator's dashboard) sees of /health: an allow-list, so a section
# added to the report later (services.health_parts) is shown to full users only until named here.
OPERATOR_HEALTH_FIELDS: dict[str, Any] = {
    "status": True,
    "version": True,
    "uptime_s": True,
    "database": {
        "kind": True,
        "reachable": True,
        "migration": {"current": True, "head": True, "up_to_date": True},
    },
    "queue": {"running": True, "queued": True, "max_concurrent": True},
}


def pick(data: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``data`` that ``fields`` names: ``True`` keeps a value as it is, a dict
    keeps the named entries of a nested object."""
    picked: dict[str, Any] = {}
    for key, rule in fields.items():
        if key not in data:
            continue
        value = data[key]
        if rule is True:
            picked[key] = value
        elif isinstance(rule, dict) and isinstance(value, dict):
            picked[key] = pick(value, rule)
    return picked


def health_report(services: Services, *, full: bool = False) -> dict[str, Any]:
    """Blocking: run in a thread. Every part says what it is and whether it works.

    ``full`` (for full users): every section, with the database URL masked. Otherwise only
    ``OPERATOR_HEALTH_FIELDS``: what operators get, and what the dashboard topic broadcasts to
    every listener (``health.update``)."""
    db = services.db
    reachable = db.ping()
    current = current_revision(db.read_engine) if reachable else None
    head = head_revision()
    report: dict[str, Any] = {
        "status": "ok" if reachable and current == head else "degraded",
        "version": __version__,
        "uptime_s": round(time.monotonic() - services.started_monotonic, 3),
        "database": {
            "kind": db.kind,
            "url": mask_url(db.display_url),
            "reachable": reachable,
            "migration": {"current": current, "head": head, "up_to_date": current == head},
        },
    }
    report.update(services.health_parts())
    return report if full else pick(report, OPERATOR_HEALTH_FIELDS)
