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
        self._keep_tokens_out_of_pages()

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

    def _keep_tokens_out_of_pages(self) -> None:
        """JupyterLab writes the server's token into every Lab page; a page opened with a
        cookie would then carry a credential it was not opened with. Without it the page
        authenticates with its cookie and XSRF token (as under JupyterHub)."""
        web_app = getattr(self.serverapp, "web_app", None)
        if web_app is None:
            return
        previous = web_app.settings.get("page_config_hook")

        def without_token(handler: Any, page_config: dict[str, Any]) -> dict[str, Any]:
            if previous is not None:
                page_config = previous(handler, page_config)
            return {**page_config, "token": ""}

        web_app.settings["page_config_hook"] = without_token

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
