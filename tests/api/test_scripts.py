"""Scripts: upload rules, versions, listing, archive/restore, delete; bad input as a table."""

from __future__ import annotations

from typing import Any

import pytest

from energyops_ext.db.models import Script
from energyops_ext.services import Services

from .conftest import Fetch, assert_error, body
from .runs_helpers import FAST_RUNS, multipart, script_id, start_run, upload, wait_for

GOOD = "print('hello')\n"


@pytest.fixture
def energyops_config() -> dict[str, Any]:
    return {**FAST_RUNS, "max_test_script_bytes": 2_000, "max_model_bytes": 3_000}


async def test_versions_listing_archive_and_delete(api: Fetch, services: Services) -> None:
    first = await upload(api, "test_prices.py", GOOD, description="price checks")
    assert first.code == 201
    v1 = body(first)
    assert (v1["name"], v1["version"], v1["kind"], v1["uploaded_by"]) == (
        "test_prices.py",
        1,
        "test",
        "quant",
    )
    same = await upload(api, "test_prices.py", GOOD)
    assert same.code == 200 and body(same)["id"] == v1["id"]
    v2 = body(await upload(api, "test_prices.py", GOOD + "print(2)\n"))
    assert v2["version"] == 2 and v2["sha256"] != v1["sha256"]
    model = await script_id(api, "dmo.py", GOOD, kind="model", model_type="RMO")

    listing = body(await api("GET", "scripts"))
    assert listing["total"] == 2
    assert {s["name"]: s["version"] for s in listing["items"]} == {"test_prices.py": 2, "dmo.py": 1}
    assert listing["counts"]["kind"] == {"test": 1, "model": 1}
    assert listing["counts"]["model_type"]["RMO"] == 1
    only_models = body(await api("GET", "scripts", params={"kind": "model"}))
    assert [s["id"] for s in only_models["items"]] == [model]
    assert body(await api("GET", "scripts", params={"q": "PRICE"}))["total"] == 1

    detail = body(await api("GET", f"scripts/{v2['id']}"))
    assert [v["version"] for v in detail["versions"]] == [2, 1]
    source = await api("GET", f"scripts/{v2['id']}/source")
    assert source.body.decode() == GOOD + "print(2)\n"
    assert source.headers["Content-Type"].startswith("text/plain")

    archived = await api("PATCH", f"scripts/{model}", json={"status": "archived"})
    assert body(archived)["status"] == "archived"
    assert_error(await api("POST", f"scripts/{model}/runs", json={}), 409, "conflict", "archived")
    await api("PATCH", f"scripts/{model}", json={"status": "active"})

    run = await start_run(api, v2["id"])
    await wait_for(api, run["id"])
    assert body(await api("GET", "scripts"))["items"][-1]["last_run"] is not None
    key = services.db.read_sync(lambda s: s.get_one(Script, v2["id"]).storage_key)
    key_path = services.storage.path(key)
    log_file = services.settings.logs_dir / f"{run['id']}.log"
    assert key_path.exists() and log_file.exists()
    assert (await api("DELETE", f"scripts/{v2['id']}")).code == 204
    assert_error(await api("GET", f"scripts/{v2['id']}"), 404)
    assert_error(await api("GET", f"runs/{run['id']}"), 404)
    assert not key_path.exists() and not log_file.exists()
    assert not (services.settings.sandbox_dir / str(run["id"])).exists()

    actions = [a["action"] for a in body(await api("GET", "activities"))["items"]]
    for action in ("uploaded", "archived", "restored", "queued", "deleted"):
        assert action in actions
    users = {a["user"] for a in body(await api("GET", "activities"))["items"] if a["user"]}
    assert users == {"quant"}


async def test_delete_with_an_active_run_needs_force(api: Fetch) -> None:
    sid = await script_id(api, "test_sleep.py", "import time\nprint('up')\ntime.sleep(60)\n")
    run = await start_run(api, sid)
    await wait_for(api, run["id"], {"running"})
    assert_error(await api("DELETE", f"scripts/{sid}"), 409, "conflict", "force=true")
    assert (await api("DELETE", f"scripts/{sid}", params={"force": "true"})).code == 204
    assert_error(await api("GET", f"runs/{run['id']}"), 404)


BAD_UPLOADS = [
    # (filename, content, fields, status, code, fragment)
    ("test_a.txt", b"print(1)", {}, 415, "unsupported_file_type", "only Python files"),
    ("test_a.py", b"", {}, 422, "invalid_script", "file is empty"),
    ("test_a.py", b"\x00\x01binary", {}, 422, "invalid_script", "binary"),
    ("test_a.py", b"print('\xff')", {}, 422, "invalid_script", "not UTF-8"),
    ("test_a.py", b"x = 1\nif x\n", {}, 422, "invalid_script", "syntax error at line 2, column"),
    ("test_a.py", b"#" * 2_500, {}, 413, "too_large", "file is 2.5 KB; the limit for test scripts"),
    ("m.py", b"#" * 3_500, {"kind": "model", "model_type": "SO"}, 413, "too_large", "models"),
    ("m.py", b"print(1)", {"kind": "model"}, 422, "invalid_field", "model_type is required"),
    ("m.py", b"print(1)", {"kind": "model", "model_type": "XX"}, 422, "invalid_field", "DMO"),
    ("test_a.py", b"print(1)", {"kind": "notebook"}, 422, "invalid_field", "kind must be"),
    ("prices.py", b"print(1)", {}, 422, "invalid_name", "test_*.py or experiment_*.py"),
    ("te..st_a.py", b"print(1)", {}, 400, "invalid_name", "must not contain"),
]


@pytest.mark.parametrize(
    ("filename", "content", "fields", "status", "code", "fragment"), BAD_UPLOADS
)
async def test_bad_uploads(
    api: Fetch,
    filename: str,
    content: bytes,
    fields: dict[str, str],
    status: int,
    code: str,
    fragment: str,
) -> None:
    response = await upload(api, filename, content, **{"kind": "test", **fields})
    error = assert_error(response, status, code, fragment)
    if "syntax error" in fragment:
        assert error["details"]["line"] == 2 and error["details"]["column"] > 0


async def test_upload_without_file_and_syntax_error_details(api: Fetch) -> None:
    payload, content_type = multipart({"kind": "test"}, None)
    response = await api("POST", "scripts", body=payload, headers={"Content-Type": content_type})
    assert_error(response, 400, "missing_file")


BAD_RUNS = [
    ({"args": "--fast"}, 422, "invalid_field", "args must be a list of strings"),
    ({"args": [1, 2]}, 422, "invalid_field", "args must be a list of strings"),
    ({"config": [1]}, 422, "invalid_field", "config must be a JSON object"),
    ({"timeout_s": 0}, 422, "invalid_field", "timeout_s must be between 1 and"),
    ({"timeout_s": 10**9}, 422, "invalid_field", "timeout_s must be between 1 and"),
    ({"timeout_s": "60"}, 422, "invalid_field", "timeout_s must be an integer"),
    ({"priority": 5000}, 422, "invalid_field", "priority must be between"),
    (
        {"inputs": [{"kind": "weather", "from": "2025-01-01", "to": "2025-01-02"}]},
        422,
        "invalid_field",
        "inputs[0].kind must be one of",
    ),
    (
        {"inputs": [{"kind": "market-bids", "from": "2025-02-01", "to": "2025-01-02"}]},
        422,
        "invalid_field",
        "to is before from",
    ),
    (
        {"inputs": [{"kind": "market-bids", "from": "yesterday", "to": "2025-01-02"}]},
        422,
        "invalid_field",
        "must be a date",
    ),
    ({"colour": "red"}, 422, "invalid_field", "unknown fields: colour"),
]


@pytest.mark.parametrize(("payload", "status", "code", "fragment"), BAD_RUNS)
async def test_bad_run_requests(
    api: Fetch, payload: dict[str, Any], status: int, code: str, fragment: str
) -> None:
    sid = await script_id(api, "test_ok.py", GOOD)
    error = assert_error(
        await api("POST", f"scripts/{sid}/runs", json=payload), status, code, fragment
    )
    assert "field" in error["details"]


async def test_unknown_ids_and_finished_kill(api: Fetch) -> None:
    assert_error(await api("GET", "scripts/999"), 404, "script_not_found")
    assert_error(await api("POST", "scripts/999/runs", json={}), 404, "script_not_found")
    assert_error(await api("GET", "runs/999"), 404, "run_not_found")
    assert_error(await api("DELETE", "runs/999"), 404, "run_not_found")
    assert_error(await api("GET", "runs/999/logs"), 404, "run_not_found")
    sid = await script_id(api, "test_ok.py", GOOD)
    run = await start_run(api, sid)
    await wait_for(api, run["id"])
    assert_error(await api("DELETE", f"runs/{run['id']}"), 409, "run_finished", "already finished")
    assert_error(await api("GET", f"runs/{run['id']}/logs", params={"level": "loud"}), 400)
    assert_error(await api("GET", "scripts", params={"kind": "notebook"}), 400)
