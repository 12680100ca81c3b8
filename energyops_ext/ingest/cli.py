"""``jupyter energyops ingest FILE --kind K`` and ``jupyter energyops demo-data --days N``."""

from __future__ import annotations

import json
import logging
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from traitlets import Bool, Integer, Unicode

from ..cli import EnergyOpsCommand
from ..errors import EnergyOpsError
from ..events import EventHub
from ..notify import set_global_channels
from ..storage import open_storage
from .schemas import KINDS


def _print(data: Any, stream: Any = None) -> None:
    print(json.dumps(data, indent=2, default=str), file=stream or sys.stdout, flush=True)


class IngestApp(EnergyOpsCommand):
    name = "jupyter-energyops-ingest"
    description = (
        "Upload a dataset file (xlsx, xls, csv) into the configured database and print the "
        "upload report as JSON. Exits 0 when every row was stored, 1 otherwise."
    )
    kind = Unicode("", help=f"Dataset kind: {', '.join(KINDS)}.").tag(config=True)
    sheet = Unicode("", help="Sheet to read (default: the first whose header matches).").tag(
        config=True
    )
    mode = Unicode("upsert", help="upsert (by key) or replace (the file's date range).").tag(
        config=True
    )
    dry_run = Bool(False, help="Report only; store nothing.").tag(config=True)
    strict = Bool(False, help="Reject the whole file on any row error.").tag(config=True)
    aliases = {"kind": "IngestApp.kind", "sheet": "IngestApp.sheet", "mode": "IngestApp.mode"}
    flags = {
        "dry-run": ({"IngestApp": {"dry_run": True}}, "Report only; store nothing."),
        "strict": ({"IngestApp": {"strict": True}}, "Reject the whole file on any row error."),
    }

    def start(self) -> None:
        from .service import IngestService, UploadRequest

        if len(self.extra_args) != 1 or not self.kind:
            print("Use: jupyter energyops ingest FILE --kind KIND", file=sys.stderr)
            self.exit(2)
        path = Path(self.extra_args[0])
        settings = self.energyops_settings()
        db = self.open_database()
        set_global_channels(db.write_engine, settings.notification_urls, settings.delivery_attempts)
        storage = open_storage(
            settings.storage_url, default_root=settings.files_dir, options=settings.storage_options
        )
        service = IngestService(settings, db, storage, EventHub(), logging.getLogger("ingest"))
        request = UploadRequest(
            kind=self.kind,
            path=path,
            filename=path.name,
            user="cli",
            sheet=self.sheet or None,
            mode=self.mode,
            dry_run=self.dry_run,
            strict=self.strict,
        )
        try:
            report = service.upload_sync(request)
        except EnergyOpsError as exc:
            _print(exc.to_json(), sys.stderr)
            self.exit(1)
        except OSError as exc:
            _print(
                {"error": {"status": 400, "code": "unreadable_file", "message": str(exc)}},
                sys.stderr,
            )
            self.exit(1)
        finally:
            db.close()
        _print(report)
        self.exit(0 if report["rows_rejected"] == 0 and report["errors_total"] == 0 else 1)


class DemoDataApp(EnergyOpsCommand):
    name = "jupyter-energyops-demo-data"
    description = "Generate realistic demo market data (market-snapshot, exchange-prices)."
    days = Integer(30, help="Number of days to generate.").tag(config=True)
    start_date = Unicode("", help="First day, YYYY-MM-DD (default: DAYS-1 days before today).").tag(
        config=True
    )
    seed = Integer(7, help="Random seed.").tag(config=True)
    aliases = {
        "days": "DemoDataApp.days",
        "start": "DemoDataApp.start_date",
        "seed": "DemoDataApp.seed",
    }

    def start(self) -> None:
        from .demo import load, today_ist

        if self.days < 1:
            print("--days must be at least 1", file=sys.stderr)
            self.exit(2)
        try:
            first = (
                date.fromisoformat(self.start_date)
                if self.start_date
                else today_ist() - timedelta(days=self.days - 1)
            )
        except ValueError:
            print(f"--start must be YYYY-MM-DD, got {self.start_date!r}", file=sys.stderr)
            self.exit(2)
        from ..models import install_reference_models

        settings = self.energyops_settings()
        db = self.open_database()
        storage = open_storage(
            settings.storage_url, default_root=settings.files_dir, options=settings.storage_options
        )
        try:
            written = load(db, first, self.days, self.seed)
            models = install_reference_models(settings, db, storage)
        finally:
            db.close()
        print(
            f"demo data for {self.days} days from {first.isoformat()}: "
            + ", ".join(f"{n} {kind} rows" for kind, n in written.items())
        )
        print(models)
