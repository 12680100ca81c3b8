"""EnergyOps in a kernel: an API client, the live event stream, and ipywidgets panels.

Talks to the server only over HTTP and WebSocket, so it runs in any kernel (JupyterLab, Voila,
a plain script) on any machine that can reach the server."""

from .client import EnergyOpsAPIError, EnergyOpsClient, ServerInfo, find_server
from .events import EventStream

__all__ = ["EnergyOpsAPIError", "EnergyOpsClient", "EventStream", "ServerInfo", "find_server"]


def __getattr__(name: str) -> object:
    """Dashboards import ipywidgets and bqplot; load them only when asked for."""
    if name in ("operations_dashboard", "market_dashboard", "workbench", "Dashboard"):
        from . import dashboard

        return getattr(dashboard, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
