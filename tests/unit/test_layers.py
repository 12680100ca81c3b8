"""Which way the imports of the package run: handlers on top of services, services on top of
the database models and the event hub. Read from the source (ast), nothing imported."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "energyops_ext"
# the Tornado side beside the handlers: the extension app and the identity provider/authorizer
WEB_LAYER = {PACKAGE / "app.py", PACKAGE / "auth.py"}
# the run engine's parts: each does one job for runs/engine.py, which wires them together
ENGINE_PARTS = [
    PACKAGE / "runs" / f"{name}.py"
    for name in ("active_run", "launch", "log_writer", "endings", "reaper")
]
# a run's lines in memory: bytes to lines, levels, result markers, the buffer
LINE_MODULES = [
    PACKAGE / "runs" / f"{name}.py" for name in ("line_splitter", "levels", "markers", "logs")
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved, at any depth of the file
    (an import inside a function counts too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def modules(where: str = "") -> list[Path]:
    return sorted((PACKAGE / where).rglob("*.py"))


def test_import_reading_resolves_relative_imports() -> None:
    assert module_name(PACKAGE / "events" / "periodic.py") == "energyops_ext.events.periodic"
    assert "energyops_ext.health.health_report" in imported_modules(
        PACKAGE / "events" / "periodic.py"
    )
    assert "energyops_ext.feed" in imported_modules(PACKAGE / "handlers" / "feed.py")


@pytest.mark.parametrize(
    "path",
    [p for p in modules() if "handlers" not in p.relative_to(PACKAGE).parts[:1]],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_only_the_web_layer_imports_the_handlers(path: Path) -> None:
    """A service or the event machinery that needs something of a handler module takes it
    from a service module the handler uses too."""
    if path in WEB_LAYER:
        return
    upward = sorted(m for m in imported_modules(path) if m.startswith("energyops_ext.handlers"))
    assert upward == []


@pytest.mark.parametrize("path", modules("handlers"), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_handlers_leave_the_database_models_to_the_services(path: Path) -> None:
    reached = sorted(m for m in imported_modules(path) if m.startswith("energyops_ext.db"))
    assert reached == []


@pytest.mark.parametrize("path", ENGINE_PARTS, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_engine_parts_never_reach_back_to_the_engine(path: Path) -> None:
    """What a part needs of the engine (its paths, its log files) it is given."""
    assert "energyops_ext.runs.engine" not in imported_modules(path)


@pytest.mark.parametrize("path", LINE_MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_line_modules_import_only_the_standard_library_and_each_other(path: Path) -> None:
    """No database, events or files: pure functions and in-memory state, tested without I/O."""
    ours = {module_name(p) for p in LINE_MODULES}
    reached = sorted(
        m
        for m in imported_modules(path)
        if m.split(".")[0] not in sys.stdlib_module_names
        and m not in ours
        and m.rpartition(".")[0] not in ours
    )
    assert reached == []
