"""``jupyter energyops``: start everything, migrate, ingest, generate demo data, clean up."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from jupyter_core.application import JupyterApp
from traitlets import Bool, Integer, Unicode

from ._version import __version__
from .config import EnergyOps, Settings
from .db import Database, current_revision, head_revision, upgrade
from .workspace import sync_workspace

# The Voila template of the operators' landing page, in a Jupyter data directory of the package.
VOILA_DATA_DIR = Path(__file__).parent / "share"
VOILA_TEMPLATE = "energyops"


class EnergyOpsCommand(JupyterApp):
    """Base of the subcommands: reads ``jupyter_energyops_config.py`` and the EnergyOps traits."""

    version = __version__
    classes = [EnergyOps]

    # every subcommand reads the same file
    config_file_name = Unicode("jupyter_energyops_config")

    def energyops_settings(self) -> Settings:
        return EnergyOps(parent=self).to_settings()

    def open_database(self) -> Database:
        settings = self.energyops_settings()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.db_url)
        upgrade(db.write_engine)
        return db


class DbUpgradeApp(EnergyOpsCommand):
    name = "jupyter-energyops-db-upgrade"
    description = "Apply every database migration (Alembic) to the configured database."

    def start(self) -> None:
        settings = self.energyops_settings()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.db_url)
        try:
            before = current_revision(db.write_engine)
            upgrade(db.write_engine)
            after = current_revision(db.write_engine)
        finally:
            db.close()
        print(f"database {db.display_url}: {before or 'empty'} -> {after} (head {head_revision()})")


class DbApp(EnergyOpsCommand):
    name = "jupyter-energyops-db"
    description = "Database commands."
    subcommands = {"upgrade": (DbUpgradeApp, DbUpgradeApp.description)}

    def start(self) -> None:
        if self.subapp is None:
            print("Use: jupyter energyops db upgrade", file=sys.stderr)
            self.exit(1)
        else:
            self.subapp.start()


class UpApp(EnergyOpsCommand):
    name = "jupyter-energyops-up"
    description = (
        "Start JupyterLab with EnergyOps on 127.0.0.1:8888 and a read-only Voila serving the "
        "dashboards on 127.0.0.1:8866, on one data directory; Ctrl-C stops both. Both serve a "
        "working copy of notebooks/ and dashboards/ in <data_dir>/workspace, so the "
        "repository's files never change."
    )
    ip = Unicode("127.0.0.1", help="Address both servers listen on.").tag(config=True)
    lab_port = Integer(8888, help="JupyterLab port.").tag(config=True)
    voila_port = Integer(8866, help="Voila port.").tag(config=True)
    dashboards_dir = Unicode(
        "dashboards", help="Dashboards (copied into the workspace) that Voila serves read-only."
    ).tag(config=True)
    notebooks_dir = Unicode(
        "notebooks", help="Notebooks copied into the workspace Lab opens in."
    ).tag(config=True)
    seed = Bool(True, help="Seed demo market data when the database is empty.").tag(config=True)
    aliases = {
        "ip": "UpApp.ip",
        "lab-port": "UpApp.lab_port",
        "voila-port": "UpApp.voila_port",
        "dashboards": "UpApp.dashboards_dir",
        "notebooks": "UpApp.notebooks_dir",
    }
    flags = {"no-seed": ({"UpApp": {"seed": False}}, "Do not seed demo data.")}

    def start(self) -> None:
        os.environ.setdefault("ENERGYOPS_DATA_DIR", str(Path(".energyops").resolve()))
        settings = self.energyops_settings()
        self._migrate_and_seed(settings)
        workspace = self._prepare_workspace(settings.data_dir / "workspace")
        lab_token = os.environ.get("ENERGYOPS_LAB_TOKEN") or secrets.token_hex(24)
        operator_token = os.environ.get("ENERGYOPS_OPERATOR_TOKEN") or secrets.token_hex(24)
        voila_token = os.environ.get("ENERGYOPS_VOILA_TOKEN") or secrets.token_hex(24)
        lab_url = f"http://{self.ip}:{self.lab_port}"
        env = dict(os.environ)
        env["ENERGYOPS_DATA_DIR"] = str(settings.data_dir)
        voila_env = dict(env)
        # Dashboards talk to the API with the operator's read-only credential.
        voila_env["ENERGYOPS_URL"] = lab_url + "/"
        voila_env["ENERGYOPS_TOKEN"] = operator_token
        # Voila finds the EnergyOps template (the landing page) among its data directories.
        voila_env["JUPYTER_PATH"] = os.pathsep.join(
            [str(VOILA_DATA_DIR), *filter(None, [env.get("JUPYTER_PATH")])]
        )
        children = [
            subprocess.Popen(
                self._lab_command(workspace, lab_token, operator_token),
                env=env,
                start_new_session=True,
            ),
            subprocess.Popen(
                self._voila_command(workspace, voila_token), env=voila_env, start_new_session=True
            ),
        ]
        print(
            "\nEnergyOps is starting\n"
            f"  JupyterLab:           {lab_url}/{lab_landing(workspace)}?token={lab_token}\n"
            f"  Operator dashboards:  http://{self.ip}:{self.voila_port}/?token={voila_token}\n"
            f"  API health:           curl -H 'Authorization: token {lab_token}' "
            f"{lab_url}/energyops/api/health\n"
            f"  Data directory:       {settings.data_dir}\n"
            f"  Working copy:         {workspace}\n"
            "Press Ctrl-C to stop both.\n",
            flush=True,
        )
        _supervise(children)

    def _migrate_and_seed(self, settings: Settings) -> None:
        db = self.open_database()  # migrate before either server starts
        try:
            if self.seed:
                from .ingest.demo import seed_if_empty
                from .models import install_reference_models
                from .storage import open_storage

                print(seed_if_empty(db), flush=True)
                storage = open_storage(
                    settings.storage_url,
                    default_root=settings.files_dir,
                    options=settings.storage_options,
                )
                print(
                    install_reference_models(settings, db, storage, only_if_no_scripts=True),
                    flush=True,
                )
        finally:
            db.close()

    def _prepare_workspace(self, workspace: Path) -> Path:
        """Copy the notebooks and dashboards into the working copy both servers serve."""
        folders = {
            "notebooks": Path(self.notebooks_dir).resolve(),
            "dashboards": Path(self.dashboards_dir).resolve(),
        }
        plan = sync_workspace(workspace, folders)
        print(f"working copy {workspace}: {plan.summary()}", flush=True)
        for name, folder in folders.items():
            if not folder.is_dir():
                print(f"  no {folder}: nothing copied into {name}/", flush=True)
        (workspace / "dashboards").mkdir(exist_ok=True)  # what Voila serves, even if empty
        for rel in plan.keep_changed:
            print(
                f"  {rel}: kept with your changes; the repository has another version "
                "(delete the working copy's file to get it on the next start)",
                flush=True,
            )
        return workspace

    def _lab_command(self, workspace: Path, lab_token: str, operator_token: str) -> list[str]:
        root_flag = ["--allow-root"] if os.geteuid() == 0 else []
        return [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            f"--ip={self.ip}",
            f"--port={self.lab_port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={workspace}",
            f"--ServerApp.default_url=/{lab_landing(workspace)}",
            # Lab's layout (open tabs, folder) belongs with this working copy, not ~/.jupyter
            f"--LabApp.workspaces_dir={workspace.parent / 'lab-workspaces'}",
            f"--IdentityProvider.token={lab_token}",
            f"--EnergyOpsIdentityProvider.operator_token={operator_token}",
            "--ServerApp.identity_provider_class=energyops_ext.auth.EnergyOpsIdentityProvider",
            "--ServerApp.authorizer_class=energyops_ext.auth.EnergyOpsAuthorizer",
            *root_flag,
            # EnergyOps settings given to `up` hold for the Lab server too
            *(arg for arg in sys.argv[1:] if arg.startswith("--EnergyOps.")),
        ]

    def _voila_command(self, workspace: Path, voila_token: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "voila",
            str(workspace / "dashboards"),
            "--no-browser",
            f"--Voila.ip={self.ip}",
            f"--port={self.voila_port}",
            f"--token={voila_token}",
            f"--template={VOILA_TEMPLATE}",
            "--Voila.tornado_settings={'websocket_max_message_size': 104857600}",
        ]


def lab_landing(workspace: Path) -> str:
    """Where Lab opens: the notebooks folder of the working copy when it has one."""
    return "lab/tree/notebooks" if (workspace / "notebooks").is_dir() else "lab"


def _supervise(children: list[subprocess.Popen[bytes]]) -> None:
    """Wait until a child exits or we are told to stop; then stop every child's group."""
    stopping = False

    def _stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.2)
    finally:
        _stop_children(children)


def _stop_children(children: list[subprocess.Popen[bytes]], grace_s: float = 10.0) -> None:
    for child in children:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    print("EnergyOps stopped.", flush=True)


SUBCOMMANDS: dict[str, tuple[Any, str]] = {
    "up": (UpApp, UpApp.description),
    "db": (DbApp, "Database commands: db upgrade."),
    "ingest": (
        "energyops_ext.ingest.cli.IngestApp",
        "Upload a dataset file from the command line, print its report.",
    ),
    "demo-data": (
        "energyops_ext.ingest.cli.DemoDataApp",
        "Generate realistic demo market data for N days.",
    ),
    "cleanup": (
        "energyops_ext.runs.cli.CleanupApp",
        "Remove stale upload temp files, run directories and orphan log files.",
    ),
}


class EnergyOpsCLI(EnergyOpsCommand):
    name = "jupyter-energyops"
    description = "EnergyOps: start the platform and manage its data from the command line."
    subcommands = SUBCOMMANDS

    def start(self) -> None:
        if self.subapp is None:
            self.print_subcommands()
            print("\nRun `jupyter energyops --help-all` for every configuration option.")
            self.exit(1)
        else:
            self.subapp.start()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    EnergyOpsCLI.launch_instance()


if __name__ == "__main__":
    main()
