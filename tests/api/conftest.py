"""API tests: a real Jupyter server with EnergyOps on a real port, on both databases."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError, HTTPResponse
from traitlets.config import Config

from energyops_ext.services import Services

OPERATOR_TOKEN = "operator-test-token"

Fetch = Callable[..., Awaitable[HTTPResponse]]


@pytest.fixture
def energyops_config() -> dict[str, Any]:
    """Extra ``EnergyOps`` traits for one test (override in a module or parametrize)."""
    return {}


@pytest.fixture
def jp_server_config(db_url: str, tmp_path: Path, energyops_config: dict[str, Any]) -> Config:
    return Config(
        {
            "ServerApp": {
                "jpserver_extensions": {"energyops_ext": True},
                "identity_provider_class": "energyops_ext.auth.EnergyOpsIdentityProvider",
                "authorizer_class": "energyops_ext.auth.EnergyOpsAuthorizer",
            },
            "EnergyOpsIdentityProvider": {"operator_token": OPERATOR_TOKEN, "user_name": "quant"},
            "EnergyOps": {
                "data_dir": str(tmp_path / "data"),
                "db_url": db_url,
                **energyops_config,
            },
        }
    )


@pytest.fixture
def services(jp_serverapp: Any, jp_asyncio_loop: asyncio.AbstractEventLoop) -> Services:
    """The running extension's services, started as the server's event loop would."""
    jp_asyncio_loop.run_until_complete(jp_serverapp.extension_manager.start_all_extensions())
    svc: Services = jp_serverapp.web_app.settings["energyops"]
    return svc


@pytest.fixture
def api(services: Services, jp_fetch: Fetch) -> Fetch:
    """``await api("GET", "runs/1")``: a request under /energyops/api that never raises on
    an HTTP error status (tests assert the status)."""

    async def call(method: str, path: str, **kwargs: Any) -> HTTPResponse:
        if "json" in kwargs:
            kwargs["body"] = json.dumps(kwargs.pop("json"))
        if method in ("POST", "PUT", "PATCH") and "body" not in kwargs:
            kwargs["body"] = b""
        try:
            return await jp_fetch(
                "energyops", "api", *path.split("/"), method=method, raise_error=False, **kwargs
            )
        except HTTPClientError as exc:  # pragma: no cover - raise_error=False avoids this
            assert exc.response is not None
            return exc.response

    return call


def body(response: HTTPResponse) -> Any:
    return json.loads(response.body)


def assert_error(
    response: HTTPResponse, status: int, code: str | None = None, fragment: str | None = None
) -> dict[str, Any]:
    assert response.code == status, response.body
    assert response.headers["Content-Type"].startswith("application/json")
    payload = body(response)
    assert set(payload) == {"error"}
    error: dict[str, Any] = payload["error"]
    assert error["status"] == status
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    if fragment is not None:
        assert fragment in error["message"], error
    return error
