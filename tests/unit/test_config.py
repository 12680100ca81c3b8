"""Configuration precedence: command line > config file > environment > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from traitlets.config import Config

from energyops_ext.config import EnergyOps
from energyops_ext.errors import BadRequest, check_name, format_size


def test_defaults_put_everything_under_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("ENERGYOPS_DB_URL", raising=False)
    monkeypatch.setenv("ENERGYOPS_DATA_DIR", str(tmp_path))
    settings = EnergyOps().to_settings()
    assert settings.data_dir == tmp_path.resolve()
    assert settings.db_url == f"sqlite:///{tmp_path.resolve() / 'energyops.db'}"
    assert settings.sandbox_dir == tmp_path.resolve() / "sandbox"
    assert settings.logs_dir == tmp_path.resolve() / "logs"
    assert settings.max_concurrent_runs == 2
    assert settings.run_timeout_s == 600


def test_without_environment_the_data_dir_is_in_the_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("ENERGYOPS_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert EnergyOps().to_settings().data_dir == tmp_path / ".local" / "share" / "energyops"


def test_environment_is_below_the_config_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ENERGYOPS_DATA_DIR", str(tmp_path / "from-env"))
    monkeypatch.setenv("ENERGYOPS_DB_URL", "postgresql:///from_env")
    assert EnergyOps().to_settings().db_url == "postgresql:///from_env"
    config = Config({"EnergyOps": {"data_dir": str(tmp_path / "from-file"), "db_url": ""}})
    settings = EnergyOps(config=config).to_settings()
    assert settings.data_dir == (tmp_path / "from-file").resolve()
    assert settings.db_url.endswith("from-file/energyops.db")


def test_command_line_is_above_the_config_file(tmp_path: Path) -> None:
    from jupyter_core.application import JupyterApp

    app = JupyterApp()
    app.config = Config({"EnergyOps": {"max_concurrent_runs": 3}})
    app.parse_command_line(["--EnergyOps.max_concurrent_runs=7"])
    assert EnergyOps(parent=app).to_settings().max_concurrent_runs == 7


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("../etc/passwd", "'/'"),
        ("a\\b.py", "'\\\\'"),
        ("..", "'..'"),
        ("x\x00.py", "NUL"),
        ("   ", "must not be empty"),
        ("x" * 256, "the limit is 255"),
    ],
)
def test_names_that_could_be_paths_are_refused(name: str, fragment: str) -> None:
    with pytest.raises(BadRequest) as caught:
        check_name(name, "filename")
    assert fragment in caught.value.message
    assert caught.value.status == 400


def test_sizes_read_like_the_contract() -> None:
    assert format_size(6_200_000) == "6.2 MB"
    assert format_size(5_000_000) == "5 MB"
    assert format_size(512_000) == "512 KB"
    assert format_size(80) == "80 bytes"
