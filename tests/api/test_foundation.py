"""Health, OpenAPI, errors and auth: what every route stands on."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from energyops_ext.db import head_revision
from energyops_ext.handlers import ROUTES

from .conftest import OPERATOR_TOKEN, Fetch, assert_error, body


async def test_health_reports_database_and_version(api: Fetch, db_url: str) -> None:
    response = await api("GET", "health")
    assert response.code == 200
    report = body(response)
    assert report["status"] == "ok"
    assert report["version"]
    assert report["uptime_s"] >= 0
    assert report["database"]["kind"] == db_url.split(":")[0].split("+")[0]
    assert report["database"]["reachable"] is True
    assert report["database"]["migration"] == {
        "current": head_revision(),
        "head": head_revision(),
        "up_to_date": True,
    }


async def test_openapi_is_served_and_lists_every_route(api: Fetch) -> None:
    response = await api("GET", "openapi.yaml")
    assert response.code == 200
    spec = yaml.safe_load(response.body)
    assert spec["openapi"].startswith("3.1")
    documented = set(spec["paths"])
    for pattern, _handler in ROUTES:
        if pattern == r"/(.*)":
            continue
        path = re.sub(r"\([^)]*\)", "{}", pattern)
        matching = [p for p in documented if re.sub(r"\{[^}]+\}", "{}", p) == path]
        assert matching, f"route {pattern} is not in openapi.yaml"


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "no/such/route", 404, "no_route"),
        ("POST", "no/such/route", 404, "no_route"),
        ("GET", "notifications/999999", 405, "method_not_allowed"),
        ("PATCH", "notifications/999999", 404, "not_found"),
        ("DELETE", "health", 405, "method_not_allowed"),
        ("GET", "activities?limit=abc", 400, "invalid_parameter"),
        ("GET", "activities?limit=0", 400, "invalid_parameter"),
        ("GET", "notifications?unread=maybe", 400, "invalid_parameter"),
    ],
)
async def test_errors_have_the_json_shape(
    api: Fetch, method: str, path: str, status: int, code: str
) -> None:
    kwargs: dict[str, Any] = {}
    if "?" in path:
        path, query = path.split("?")
        kwargs["params"] = dict([query.split("=")])
    if method == "PATCH":
        kwargs["json"] = {"is_read": True}
    assert_error(await api(method, path, **kwargs), status, code)


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"is_read": "yes"}', "is_read must be true or false"),
        ('{"colour": "red"}', "unknown fields: colour"),
        ("{}", "send is_read"),
    ],
)
async def test_bad_patch_bodies_are_400(api: Fetch, payload: str, fragment: str) -> None:
    assert_error(await api("PATCH", "notifications/1", body=payload), 400, fragment=fragment)


async def test_no_token_is_403(api: Fetch) -> None:
    response = await api("GET", "health", headers={"Authorization": ""})
    assert_error(response, 403, "forbidden")


async def test_operator_reads_but_cannot_write(api: Fetch) -> None:
    operator = {"Authorization": f"token {OPERATOR_TOKEN}"}
    assert (await api("GET", "health", headers=operator)).code == 200
    assert (await api("GET", "notifications", headers=operator)).code == 200
    denied = await api("PATCH", "notifications/1", headers=operator, json={"is_read": True})
    assert_error(denied, 403, "forbidden")


async def test_operator_token_cannot_reach_kernels(api: Fetch, jp_fetch: Fetch) -> None:
    operator = {"Authorization": f"token {OPERATOR_TOKEN}"}
    response = await jp_fetch("api", "kernels", headers=operator, raise_error=False)
    assert response.code == 403


async def test_cookie_writes_need_xsrf(api: Fetch, jp_fetch: Fetch, jp_base_url: str) -> None:
    # Log in with the token to get the login cookie, then write with the cookie only.
    login = await jp_fetch("api", "contents", raise_error=False)
    cookies = [c.split(";")[0] for c in login.headers.get_list("Set-Cookie")]
    cookie_header = "; ".join(cookies)
    assert any(c.startswith("username-") for c in cookies), cookies
    read = await api("GET", "notifications", headers={"Authorization": "", "Cookie": cookie_header})
    assert read.code == 200
    write = await api(
        "PATCH",
        "notifications/1",
        headers={"Authorization": "", "Cookie": cookie_header},
        json={"is_read": True},
    )
    assert_error(write, 403)
