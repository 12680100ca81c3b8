"""Alerts on market data: rules with Grafana's states, evaluated on uploads and a timer."""

from .rules import OPERATORS, SERIES, STATES, advance, is_breached, is_muted, step
from .service import AlertService, EvaluationReport

__all__ = [
    "OPERATORS",
    "SERIES",
    "STATES",
    "AlertService",
    "EvaluationReport",
    "advance",
    "is_breached",
    "is_muted",
    "step",
]
