"""Reference models shipped with EnergyOps: plain files a quant can copy and change.

``jupyter energyops demo-data`` (and ``jupyter energyops up`` on an empty database) installs
them as model scripts, each a version like an upload.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..config import Settings
from ..db import Database
from ..db.models import Script
from ..storage import Storage

HERE = Path(__file__).resolve().parent
INSTALLED_BY = "energyops"


@dataclass(frozen=True)
class ReferenceModel:
    file: str
    model_type: str
    description: str

    @property
    def path(self) -> Path:
        return HERE / self.file


REFERENCE_MODELS = (
    ReferenceModel(
        "so_storage_arbitrage.py",
        "SO",
        "Reference SO model: battery arbitrage against DAM prices (LP/MILP on HiGHS); "
        "writes the day's net MW back as model_result_mw.",
    ),
    ReferenceModel(
        "dmo_bid_builder.py",
        "DMO",
        "Reference DMO model: price scenarios per block to a price-quantity sell bid within "
        "the plant's limits (MILP on HiGHS); writes the expected cleared MW back as "
        "model_result_mw.",
    ),
)


def install_reference_models(
    settings: Settings, db: Database, storage: Storage, *, only_if_no_scripts: bool = False
) -> str:
    """Each reference model as the next version of its name (nothing when the latest version
    has the same content). With ``only_if_no_scripts``, nothing when any script exists."""
    from ..runs import scripts

    if only_if_no_scripts:
        count = db.read_sync(lambda s: s.scalar(select(func.count()).select_from(Script)))
        if count:
            return f"scripts present ({count}); reference models not installed"
    done = []
    for model in REFERENCE_MODELS:
        upload = scripts.validate_upload(
            settings,
            model.file,
            model.path.read_bytes(),
            "model",
            model.model_type,
            model.description,
        )
        key = storage.new_key("scripts", ".py")
        storage.put(key, upload.data)

        def save(session: Session, upload: Any = upload, key: str = key) -> tuple[Any, bool]:
            script, created, _activities = scripts.store_version(session, upload, key, INSTALLED_BY)
            return script, created

        try:
            script, created = db.write_sync(save)
        except BaseException:
            storage.delete(key)
            raise
        if not created:
            storage.delete(key)
        state = "installed" if created else "up to date"
        done.append(f"{model.file} v{script['version']} ({model.model_type}, {state})")
    return "reference models: " + ", ".join(done)
