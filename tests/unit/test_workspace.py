"""The working copy `jupyter energyops up` serves: what is copied, refreshed and kept."""

from __future__ import annotations

from pathlib import Path

from energyops_ext.workspace import MANIFEST, SyncPlan, file_hash, plan_sync, sync_workspace


def test_plan_copies_missing_refreshes_untouched_and_keeps_changed_files() -> None:
    source = {"a": "h-a", "b": "h-b2", "c": "h-c2", "d": "h-d"}
    working = {"b": "h-b1", "c": "h-edited", "d": "h-d"}
    manifest = {"b": "h-b1", "c": "h-c1", "d": "h-d"}
    plan = plan_sync(source, working, manifest)
    assert plan == SyncPlan(add=["a"], update=["b"], keep_changed=["c"], current=["d"])
    assert plan.summary() == "1 copied, 1 updated, 1 kept with local changes"


def test_a_file_without_a_manifest_entry_that_differs_counts_as_changed() -> None:
    # the working copy's own file (or a lost manifest): never overwritten
    assert plan_sync({"a": "new"}, {"a": "mine"}, {}).keep_changed == ["a"]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_sync_copies_then_keeps_edits_and_takes_new_repository_versions(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write(repo / "notebooks" / "quickstart.ipynb", "v1")
    write(repo / "notebooks" / "data" / "day.csv", "csv")
    write(repo / "notebooks" / ".ipynb_checkpoints" / "quickstart-checkpoint.ipynb", "old")
    write(repo / "notebooks" / ".hidden", "x")
    write(repo / "dashboards" / "market.ipynb", "m1")
    tracked = {path: file_hash(path) for path in repo.rglob("*") if path.is_file()}
    workspace = tmp_path / "data" / "workspace"
    folders = {
        "notebooks": repo / "notebooks",
        "dashboards": repo / "dashboards",
        "missing": repo / "missing",
    }

    first = sync_workspace(workspace, folders)
    assert first.add == [
        "dashboards/market.ipynb",
        "notebooks/data/day.csv",
        "notebooks/quickstart.ipynb",
    ]
    assert (workspace / "notebooks" / "quickstart.ipynb").read_text() == "v1"
    assert not (workspace / "notebooks" / ".ipynb_checkpoints").exists()
    assert not (workspace / "notebooks" / ".hidden").exists()
    assert (workspace / MANIFEST).exists()

    # Lab saves the working copy; the repository moves on for both files
    write(workspace / "notebooks" / "quickstart.ipynb", "v1 with outputs")
    write(repo / "notebooks" / "quickstart.ipynb", "v2")
    write(repo / "dashboards" / "market.ipynb", "m2")
    second = sync_workspace(workspace, folders)
    assert second.keep_changed == ["notebooks/quickstart.ipynb"]
    assert second.update == ["dashboards/market.ipynb"]
    assert (workspace / "notebooks" / "quickstart.ipynb").read_text() == "v1 with outputs"
    assert (workspace / "dashboards" / "market.ipynb").read_text() == "m2"

    # deleting the working file brings the repository's version back
    (workspace / "notebooks" / "quickstart.ipynb").unlink()
    assert sync_workspace(workspace, folders).add == ["notebooks/quickstart.ipynb"]
    assert (workspace / "notebooks" / "quickstart.ipynb").read_text() == "v2"
    unchanged = {path: file_hash(path) for path in tracked if path.exists()}
    assert set(unchanged) == set(tracked)
    assert not list(workspace.rglob(".*.copying"))
