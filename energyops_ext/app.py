"""The Jupyter server extension: configuration, services, routes, start and stop."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from jupyter_server.utils import url_path_join

from ._version import __version__
from .config import EnergyOps
from .events.jupyter import forward_lifecycle, register_schemas
from .handlers import ROUTES
from .services import Services, build_services

API_BASE = "/energyops/api"


class EnergyOpsApp(ExtensionApp):
    """EnergyOps inside Jupyter Server: REST handlers and the event WebSocket."""

    name = "energyops"
    description = "EnergyOps: market data, optimization runs and live logs for power-trading desks"
    version = __version__
    load_other_extensions = True
    classes = [EnergyOps]

    services: Services | None = None

    def initialize_settings(self) -> None:
        config = EnergyOps(parent=self)
        settings = config.to_settings()
        self.services = build_services(settings, self.log)
        self.settings["energyops"] = self.services
        self._bridge_jupyter_events()

    def initialize_handlers(self) -> None:
        self.handlers.extend((url_path_join(API_BASE, path), handler) for path, handler in ROUTES)

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        assert self.services is not None
        self.services.hub.bind_loop(asyncio.get_running_loop())
        self._export_kernel_environment()
        await self.services.start(self._public_url())

    async def stop_extension(self) -> None:
        if self.services is not None:
            await self.services.stop()
            self.services = None

    def _public_url(self) -> str | None:
        """Where this server answers (shown by GET /servers); never with a token."""
        serverapp = self.serverapp
        return str(serverapp.connection_url) if serverapp is not None else None

    def _bridge_jupyter_events(self) -> None:
        """Lifecycle events also go to jupyter_server's event bus (/api/events/subscribe)."""
        event_logger = getattr(self.serverapp, "event_logger", None)
        if event_logger is None or self.services is None:
            return
        register_schemas(event_logger)
        self.services.hub.add_listener(forward_lifecycle(event_logger))

    def _export_kernel_environment(self) -> None:
        """Kernels inherit the server's environment: tell them how to reach this API."""
        serverapp = self.serverapp
        if serverapp is None:
            return
        os.environ["ENERGYOPS_URL"] = serverapp.connection_url
        token = getattr(serverapp.identity_provider, "token", "")
        if token:
            os.environ["ENERGYOPS_TOKEN"] = token
