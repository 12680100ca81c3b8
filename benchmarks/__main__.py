"""``python -m benchmarks [NAME ...]``: run benchmarks, print and save a markdown table."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

from .harness import REGISTRY, markdown_table, write_results


def load_all() -> None:
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if module.name.startswith("bench_"):
            importlib.import_module(f"benchmarks.{module.name}")


def main(argv: list[str]) -> int:
    load_all()
    names = argv or sorted(REGISTRY)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        print(f"unknown benchmarks: {', '.join(unknown)}; known: {', '.join(sorted(REGISTRY))}")
        return 2
    results = []
    for name in names:
        print(f"running {name} ...", flush=True)
        results.append(REGISTRY[name]())
    json_path, _ = write_results(results)
    print(markdown_table(results))
    print(f"results: {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
