"""The benchmark harness: named benchmarks, each returning figures with their raw baselines."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

RESULTS_DIR = Path(__file__).parent / "results"


@dataclass
class Figure:
    """One measured figure. ``baseline`` is the raw operation measured in the same run;
    ``ratio`` = value / baseline (or the inverse for rates, see ``higher_is_better``)."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    goal: str = ""
    higher_is_better: bool = False

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        assert self.baseline is not None
        return self.value / self.baseline


@dataclass
class Result:
    benchmark: str
    figures: list[Figure] = field(default_factory=list)
    notes: str = ""


Benchmark = Callable[[], Result]
REGISTRY: dict[str, Benchmark] = {}


def benchmark(name: str) -> Callable[[Benchmark], Benchmark]:
    def register(fn: Benchmark) -> Benchmark:
        REGISTRY[name] = fn
        return fn

    return register


def timed(fn: Callable[[], object], repeat: int = 5) -> float:
    """Median wall time of ``fn`` in seconds over ``repeat`` runs."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def write_results(results: list[Result], out_dir: Path = RESULTS_DIR) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    payload = {
        "created_at": stamp,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "results": [
            {
                "benchmark": r.benchmark,
                "notes": r.notes,
                "figures": [{**asdict(f), "ratio": f.ratio} for f in r.figures],
            }
            for r in results
        ],
    }
    json_path = out_dir / f"bench-{stamp}.json"
    json_path.write_text(json.dumps(payload, indent=2))
    md_path = out_dir / f"bench-{stamp}.md"
    md_path.write_text(markdown_table(results))
    (out_dir / "latest.json").write_text(json.dumps(payload, indent=2))
    (out_dir / "latest.md").write_text(markdown_table(results))
    return json_path, md_path


def markdown_table(results: list[Result]) -> str:
    lines = [
        "| benchmark | figure | value | baseline (same run) | ratio | goal |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        for f in r.figures:
            base = f"{f.baseline:,.3f} ({f.baseline_name})" if f.baseline is not None else ""
            ratio = f"{f.ratio:.2f}" if f.ratio is not None else ""
            lines.append(
                f"| {r.benchmark} | {f.name} | {f.value:,.3f} {f.unit} | {base} | {ratio} "
                f"| {f.goal} |"
            )
    return "\n".join(lines) + "\n"
