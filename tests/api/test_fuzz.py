"""Property-based fuzzing of every operation in the served openapi.yaml (schemathesis).

A live server per database gets valid (positive) and invalid (negative) requests for every
documented operation, a bounded number per operation with a fixed derandomized seed. Every
response must be a non-5xx whose status code is documented for that operation and whose body
matches the documented schema and content type. The server log must hold no uncaught
exception. Authorization is the auth matrix's business: the security scheme is dropped from
the loaded copy so negative cases do not strip the token.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ..conftest import BACKENDS
from .seed import seed
from .servers import LiveServer, live_server

EXAMPLES = int(os.environ.get("ENERGYOPS_FUZZ_EXAMPLES", "25"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Path parameters of what ``seed`` created: a second pass per operation fuzzes the query and
# body against real objects instead of ids that do not exist.
KNOWN = {
    "script_id": 1,
    "run_id": 1,
    "upload_id": 1,
    "notification_id": 1,
    "kind": "market-snapshot",
}


@dataclass
class Tally:
    requests: int = 0
    unsendable: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: dict[tuple[str, str], str] = field(default_factory=dict)

    def fail(self, label: str, kind: str, detail: str) -> None:
        self.failures.setdefault((label, kind), detail[:1500])


def load_schema(server: LiveServer) -> Any:
    response = requests.get(server.url("openapi.yaml"), headers=server.headers, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/yaml")
    spec = yaml.safe_load(response.text)
    spec.pop("security", None)
    spec.get("components", {}).pop("securitySchemes", None)
    schema = schemathesis.openapi.from_dict(spec)
    schema.config.update(base_url=server.url("").rstrip("/"))
    return schema


def fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    server: LiveServer,
    tally: Tally,
    known: dict[str, Any] | None,
) -> None:
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy(generation_mode=mode, path_parameters=known))
    def run(case: Any) -> None:
        try:
            response = case.call(headers=server.headers, timeout=60)
        except schemathesis.errors.SerializationNotPossible:
            tally.unsendable += 1
            return
        except requests.RequestException as exc:
            tally.fail(operation.label, "no response", f"{exc!r}\n{case.as_curl_command()}")
            return
        tally.requests += 1
        tally.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, BaseExceptionGroup) as exc:
            tally.fail(operation.label, f"{response.status_code} {mode.value}", str(exc))

    with contextlib.suppress(Unsatisfiable):  # nothing to negate: no parameters, no body
        run()


def fuzz(server: LiveServer) -> Tally:
    tally = Tally()
    schema = load_schema(server)
    operations = [result.ok() for result in schema.get_all_operations()]
    # Deletes last, so that they do not take away what the other operations' second pass uses.
    operations.sort(key=lambda op: op.method.upper() == "DELETE")
    for operation in operations:
        passes: list[dict[str, Any] | None] = [None]
        known = {p.name: KNOWN[p.name] for p in operation.path_parameters if p.name in KNOWN}
        if known and operation.method.upper() != "DELETE":
            passes.append(known)
        for path_parameters in passes:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                fuzz_operation(operation, mode, server, tally, path_parameters)
    return tally


def report(backend: str, tally: Tally, seconds: float) -> str:
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(tally.statuses.items()))
    return (
        f"fuzz on {backend}: {tally.requests} requests in {seconds:.1f}s "
        f"({tally.unsendable} unsendable cases skipped); statuses {statuses}"
    )


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_fuzz_gives_no_server_error_and_no_schema_violation(
    backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with live_server(tmp_path, backend) as server:
        seed(server)
        started = time.monotonic()
        tally = fuzz(server)
        elapsed = time.monotonic() - started
        health = requests.get(server.url("health"), headers=server.headers, timeout=5)
        log = server.log_text()
    with capsys.disabled():
        print(f"\n{report(backend, tally, elapsed)}")
    assert tally.requests > 0
    problems = "\n\n".join(
        f"{label} [{kind}]:\n{detail}" for (label, kind), detail in sorted(tally.failures.items())
    )
    assert not tally.failures, f"{len(tally.failures)} distinct problems:\n{problems}"
    assert health.status_code == 200
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 :][:6000]
