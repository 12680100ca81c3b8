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
        "Start JupyterLab with EnergyOps on 127.0.0.1:8888 and a read-only Voila serving "
        "dashboards/ on 127.0.0.1:8866, on one data directory; Ctrl-C stops both."
    )
    ip = Unicode("127.0.0.1", help="Address both servers listen on.").tag(config=True)
    lab_port = Integer(8888, help="JupyterLab port.").tag(config=True)
    voila_port = Integer(8866, help="Voila port.").tag(config=True)
    dashboards_dir = Unicode("dashboards", help="Notebooks Voila serves read-only.").tag(
        config=True
    )
    seed = Bool(True, help="Seed demo market data when the database is empty.").tag(config=True)
    aliases = {
        "ip": "UpApp.ip",
        "lab-port": "UpApp.lab_port",
        "voila-port": "UpApp.voila_port",
        "dashboards": "UpApp.dashboards_dir",
    }
    flags = {"no-seed": ({"UpApp": {"seed": False}}, "Do not seed demo data.")}

    def start(self) -> None:
        os.environ.setdefault("ENERGYOPS_DATA_DIR", str(Path(".energyops").resolve()))
        settings = self.energyops_settings()
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
        lab_token = os.environ.get("ENERGYOPS_LAB_TOKEN") or secrets.token_hex(24)
        operator_token = os.environ.get("ENERGYOPS_OPERATOR_TOKEN") or secrets.token_hex(24)
        voila_token = os.environ.get("ENERGYOPS_VOILA_TOKEN") or secrets.token_hex(24)
        lab_url = f"http://{self.ip}:{self.lab_port}"
        env = dict(os.environ)
        env["ENERGYOPS_DATA_DIR"] = str(settings.data_dir)
        root_flag = ["--allow-root"] if sys.platform != "win32" and os.geteuid() == 0 else []
        lab_cmd = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            f"--ip={self.ip}",
            f"--port={self.lab_port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={lab_token}",
            f"--EnergyOpsIdentityProvider.operator_token={operator_token}",
            "--ServerApp.identity_provider_class=energyops_ext.auth.EnergyOpsIdentityProvider",
            "--ServerApp.authorizer_class=energyops_ext.auth.EnergyOpsAuthorizer",
            *root_flag,
            # EnergyOps settings given to `up` hold for the Lab server too
            *(arg for arg in sys.argv[1:] if arg.startswith("--EnergyOps.")),
        ]
        voila_env = dict(env)
        # Dashboards talk to the API with the operator's read-only credential.
        voila_env["ENERGYOPS_URL"] = lab_url + "/"
        voila_env["ENERGYOPS_TOKEN"] = operator_token
        voila_cmd = [
            sys.executable,
            "-m",
            "voila",
            self.dashboards_dir,
            "--no-browser",
            f"--Voila.ip={self.ip}",
            f"--port={self.voila_port}",
            f"--token={voila_token}",
            "--Voila.tornado_settings={'websocket_max_message_size': 104857600}",
        ]
        children = [
            subprocess.Popen(lab_cmd, env=env, start_new_session=True),
            subprocess.Popen(voila_cmd, env=voila_env, start_new_session=True),
        ]
        print(
            "\nEnergyOps is starting\n"
            f"  JupyterLab:           {lab_url}/lab?token={lab_token}\n"
            f"  Operator dashboards:  http://{self.ip}:{self.voila_port}/?token={voila_token}\n"
            f"  API health:           curl -H 'Authorization: token {lab_token}' "
            f"{lab_url}/energyops/api/health\n"
            f"  Data directory:       {settings.data_dir}\n"
            "Press Ctrl-C to stop both.\n",
            flush=True,
        )
        _supervise(children)


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
            _signal_group(child, kill=False)
    deadline = time.monotonic() + grace_s
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(child, kill=True)
            child.wait()
    print("EnergyOps stopped.", flush=True)


def _signal_group(child: subprocess.Popen[bytes], *, kill: bool) -> None:
    """SIGTERM (or SIGKILL) a child's session; Windows has neither: the child is ended."""
    if sys.platform == "win32":
        child.kill()
        return
    os.killpg(child.pid, signal.SIGKILL if kill else signal.SIGTERM)


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
