"""Fixtures shared by every test level.

Every database test runs twice: on SQLite (a fresh file per test, a copy of one migrated once
per session) and on the machine's PostgreSQL (one database per test session, emptied before
each test). A PostgreSQL that cannot be reached fails the run; set ENERGYOPS_TEST_PG_URL to use
another server.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from energyops_ext.db import Database, normalize_url, upgrade
from energyops_ext.db.base import Base

pytest_plugins = ["pytest_jupyter.jupyter_server"]

PG_ADMIN_URL = os.environ.get("ENERGYOPS_TEST_PG_URL", "postgresql+psycopg:///test")
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"the shared fixtures are missing: {FIXTURES} (clone with ../shared beside)")
    return FIXTURES


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL database of this test session, migrated once, dropped at the end."""
    admin_url = make_url(PG_ADMIN_URL)
    if admin_url.drivername in ("postgresql", "postgres"):
        admin_url = admin_url.set(drivername="postgresql+psycopg")
    name = f"energyops_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {exc}", pytrace=False)
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_engine(pg_url: str) -> Iterator[Engine]:
    """One engine on the session's PostgreSQL database for emptying it between tests."""
    engine = create_engine(pg_url)
    yield engine
    engine.dispose()


def _empty_postgres(engine: Engine) -> None:
    """Every row gone and every id sequence back at its start, as ``TRUNCATE ... RESTART
    IDENTITY`` would leave it; row by row, which is several times faster on tables this small
    (TRUNCATE makes new files for each table and index)."""
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(text(f'DELETE FROM "{table.name}"'))
        sequences = conn.execute(
            text("SELECT sequence_name FROM information_schema.sequences")
        ).scalars()
        for sequence in list(sequences):
            conn.execute(text(f'ALTER SEQUENCE "{sequence}" RESTART'))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per session; each test gets its own copy."""
    path = tmp_path_factory.mktemp("sqlite-template") / "energyops-template.db"
    db = Database(f"sqlite:///{path}")
    upgrade(db.write_engine)
    db.close()
    assert not path.with_name(path.name + "-wal").exists(), "the template is still open"
    return path


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty, migrated database: SQLite, then PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "energyops-test.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("pg_url")
    _empty_postgres(request.getfixturevalue("pg_engine"))
    return url


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    db = Database(db_url)
    upgrade(db.write_engine)
    yield db
    db.close()


@pytest.fixture(params=BACKENDS)
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all (a fresh one on PostgreSQL, dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrate.db'}"
        return
    admin = create_engine(normalize_url(PG_ADMIN_URL), isolation_level="AUTOCOMMIT")
    name = f"energyops_migrate_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {exc}", pytrace=False)
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
