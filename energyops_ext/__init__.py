"""EnergyOps: market data, optimization runs and operator dashboards for power-trading desks."""

from __future__ import annotations

from typing import Any

from ._version import __version__


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import EnergyOpsApp

    return [{"module": "energyops_ext.app", "app": EnergyOpsApp}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "energyops-labextension"}]


__all__ = ["__version__"]
