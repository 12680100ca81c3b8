"""Dataset kinds (DATA.md): canonical columns, keys, header aliases and value bounds."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from ..db.base import Base
from ..db.models import DATASET_MODELS

ColumnType = Literal["price", "mw", "number", "text"]

MW_BOUNDS = (0.0, 100_000.0)
PRICE_BOUNDS = (0.0, 20_000.0)

_PARENS = re.compile(r"[\(\[\{][^\)\]\}]*[\)\]\}]")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_UNIT_SUFFIXES = ("inrmwh", "rsmwh", "rskwh", "mwh", "kwh", "mw", "pct")


def normalize_header(text: object) -> str:
    """The form headers are matched on: lower case, units in brackets, punctuation, spaces
    and a trailing unit dropped (``DAM_Price (Rs/MWh)`` → ``damprice``, ``ScheduleMW`` →
    ``schedule``)."""
    if text is None:
        return ""
    value = _NON_ALNUM.sub("", _PARENS.sub("", str(text).lower()))
    for suffix in _UNIT_SUFFIXES:
        if value.endswith(suffix) and len(value) > len(suffix) + 1:
            return value[: -len(suffix)]
    return value


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    aliases: tuple[str, ...] = ()

    @property
    def unit(self) -> str | None:
        return {"price": "Rs/MWh", "mw": "MW"}.get(self.type)

    @property
    def numeric(self) -> bool:
        return self.type != "text"


@dataclass(frozen=True)
class DatasetKind:
    """One dataset kind. ``key`` includes date and block; ``fallbacks`` fill a key column the
    file lacks from another column (a snapshot's ``plant`` from its plant name)."""

    name: str
    table: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    fallbacks: dict[str, str] = field(default_factory=dict)
    default_empty: tuple[str, ...] = ()

    @property
    def value_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.numeric)

    @property
    def text_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if not c.numeric)

    @property
    def extra_keys(self) -> tuple[str, ...]:
        """Key columns besides date and block."""
        return tuple(k for k in self.key if k not in ("date", "block"))

    @property
    def stored_key(self) -> tuple[str, ...]:
        """The key in the order the table keeps it (its primary key, migration 0009): date,
        block, then the other key columns. Rows are listed and paged in this order."""
        return ("date", "block", *self.extra_keys)

    @property
    def required_keys(self) -> tuple[str, ...]:
        """Key columns that must come from the file, a fallback or the request."""
        return tuple(k for k in self.extra_keys if k not in self.default_empty)

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def model(self) -> type[Base]:
        return DATASET_MODELS[self.name]

    def describe(self) -> dict[str, object]:
        return {
            "kind": self.name,
            "table": self.table,
            "key": list(self.key),
            "columns": [
                {
                    "name": "date",
                    "type": "date",
                    "unit": None,
                    "aliases": list(TIME_ALIASES["date"]),
                },
                {
                    "name": "block",
                    "type": "block",
                    "unit": None,
                    "aliases": list(TIME_ALIASES["block"]),
                },
                *(
                    {"name": c.name, "type": c.type, "unit": c.unit, "aliases": list(c.aliases)}
                    for c in self.columns
                ),
            ],
        }


TIME_ALIASES: dict[str, tuple[str, ...]] = {
    "date": ("Date", "Delivery Date", "Trade Date", "Trading Date", "Day", "Flow Date"),
    "block": (
        "Time Block",
        "TimeBlock",
        "Timeblock",
        "time_block",
        "Block",
        "Block No",
        "Block Number",
        "TB",
        "Time Slot",
        "Slot",
        "Interval",
    ),
    "timestamp": ("Time Period", "TimePeriod", "Timestamp", "DateTime", "Date Time", "Period"),
    "hour": ("Hour", "Hr", "Hour No", "Hour Ending"),
}


def _c(name: str, type_: ColumnType, *aliases: str) -> Column:
    return Column(name, type_, (name, *aliases))


_REGION = _c("region", "text", "Region")
_STATE = _c("state", "text", "State")
_PLANT_NAME = _c("plant_name", "text", "Plant Name", "Generator Name", "Station")
_CONTRACT_NAME = _c("contract_name", "text", "Contract Name")

KINDS: dict[str, DatasetKind] = {
    k.name: k
    for k in (
        DatasetKind(
            "market-snapshot",
            "market_snapshot",
            ("date", "block", "plant", "contract"),
            (
                _c("dam_price", "price", "DAM Price", "DAMprice", "DAM", "DAM MCP", "DAM Rate"),
                _c("rtm_price", "price", "RTM Price", "RTMprice", "RTM", "RTM MCP", "RTM Rate"),
                _c("gdam_price", "price", "GDAM Price", "GDAMprice", "GDAM", "GDAM MCP"),
                _c("scheduled_mw", "mw", "Scheduled MW", "ScheduleMW", "Schedule", "Scheduled"),
                _c("model_result_mw", "mw", "Model Result MW", "ModelresultMW", "Model Result"),
                _c("purchase_bid_mw", "mw", "Purchase Bid MW", "PurchaseBidMW", "Purchase Bid"),
                _c("sell_bid_mw", "mw", "Sell Bid MW", "SellBidMW", "Sell Bid"),
                _STATE,
                _REGION,
                _c("plant", "text", "Plant", "Plant ID", "PlantID", "Plant Code"),
                _c("contract", "text", "Contract", "Contract ID", "ContractID", "Contract Code"),
                _PLANT_NAME,
                _CONTRACT_NAME,
                _c("model_id", "text", "Model ID", "ModelID", "Model"),
            ),
            fallbacks={"plant": "plant_name", "contract": "contract_name"},
            default_empty=("plant", "contract"),
        ),
        DatasetKind(
            "exchange-prices",
            "exchange_prices",
            ("market", "date", "block", "area"),
            (
                _c("market", "text", "Market", "Market Type", "Segment", "Exchange Market"),
                _c("area", "text", "Area", "Bid Area", "Region Area"),
                _c("purchase_bid_mw", "mw", "Purchase Bid", "Purchase Bid MW", "Buy Bid"),
                _c("sell_bid_mw", "mw", "Sell Bid", "Sell Bid MW"),
                _c("mcv_mw", "mw", "MCV", "Market Clearing Volume", "Cleared Volume"),
                _c(
                    "fsv_mw",
                    "mw",
                    "Final Scheduled Volume",
                    "FSV",
                    "Scheduled Volume",
                    "Scheduled MW",
                    "ScheduleMW",
                ),
                _c("mcp", "price", "MCP", "Market Clearing Price", "Price", "Clearing Price"),
            ),
            default_empty=("area",),
        ),
        DatasetKind(
            "generator-schedule",
            "generator_schedule",
            ("date", "block", "plant_id", "contract"),
            (
                _c(
                    "plant_id", "text", "Plant ID", "PlantID", "Plant Code", "Generator ID", "Plant"
                ),
                _c("contract", "text", "Contract", "Contract ID", "ContractID", "Contract Code"),
                _REGION,
                _STATE,
                _PLANT_NAME,
                _c("technology_type", "text", "Technology Type", "Technology", "Fuel", "Type"),
                _CONTRACT_NAME,
                _c("scheduled_mw", "mw", "Scheduled MW", "ScheduledMW", "ScheduleMW", "Schedule"),
                _c("actual_mw", "mw", "Actual MW", "ActualMW", "Actual", "Generation"),
            ),
            fallbacks={"contract": "contract_name", "plant_id": "plant_name"},
            default_empty=("contract",),
        ),
        DatasetKind(
            "contract-schedule",
            "contract_schedule",
            ("date", "block", "contract"),
            (
                _c("contract", "text", "Contract", "Contract ID", "ContractID", "Contract Code"),
                _CONTRACT_NAME,
                _c("contract_type", "text", "Contract Type", "Type"),
                _c("counterparty", "text", "Counterparty", "Counter Party", "Buyer", "Seller"),
                _c("scheduled_mw", "mw", "Scheduled MW", "ScheduledMW", "ScheduleMW", "Schedule"),
                _c("rate", "price", "Rate", "Tariff", "Price"),
            ),
            fallbacks={"contract": "contract_name"},
        ),
        DatasetKind(
            "market-bids",
            "market_bids",
            ("date", "block", "plant_id", "market"),
            (
                _c("plant_id", "text", "Plant ID", "PlantID", "Plant Code", "Generator ID"),
                _c("market", "text", "Market", "Exchange Market", "Segment"),
                _REGION,
                _STATE,
                _PLANT_NAME,
                _c("market_type", "text", "Market Type", "MarketType"),
                _c("bid_price", "price", "Bid Price", "BidPrice"),
                _c("bid_volume_mw", "mw", "Bid Volume", "Bid Volume MW", "BidVolumeMW", "Bid MW"),
                _c("clearing_price", "price", "Clearing Price", "ClearingPrice", "MCP"),
                _c(
                    "clearing_volume_mw",
                    "mw",
                    "Clearing Volume",
                    "ClearingVolumeMW",
                    "Cleared Volume",
                    "MCV",
                ),
            ),
            fallbacks={"market": "market_type", "plant_id": "plant_name"},
        ),
        DatasetKind(
            "storage-schedule",
            "storage_schedule",
            ("date", "block", "region", "state", "storage_type"),
            (
                _REGION,
                _STATE,
                _c("storage_type", "text", "Storage Type", "StorageType", "Technology", "Type"),
                _c("capacity_mw", "mw", "Capacity MW", "CapacityMW", "Capacity"),
                _c("charge_mw", "mw", "Charge MW", "ChargeMW", "Charge"),
                _c("discharge_mw", "mw", "Discharge MW", "DischargeMW", "Discharge"),
                _c("state_of_charge", "number", "State of Charge", "StateOfCharge", "SoC"),
                _c("efficiency", "number", "Efficiency", "Round Trip Efficiency"),
                _c("cycles", "number", "Cycles", "Cycle Count"),
            ),
            default_empty=("region", "state", "storage_type"),
        ),
    )
}

SUMMARY_WORDS = frozenset(
    normalize_header(w)
    for w in (
        "Total",
        "Grand Total",
        "Sum",
        "Max",
        "Maximum",
        "Min",
        "Minimum",
        "Avg",
        "Average",
        "Mean",
        "RTC",
        "Day",
        "Night",
        "Peak",
        "Off Peak",
        "Off-Peak",
        "Non Peak",
        "Solar",
        "Non Solar",
        "Summary",
    )
)


def get_kind(name: str) -> DatasetKind:
    from ..errors import NotFound

    kind = KINDS.get(name)
    if kind is None:
        raise NotFound(
            f"unknown dataset kind {name!r}; known kinds: {', '.join(KINDS)}",
            code="unknown_kind",
        )
    return kind


def alias_table(kind: DatasetKind) -> dict[str, str]:
    """normalized alias → canonical column (time columns included)."""
    table: dict[str, str] = {}
    for canonical, aliases in TIME_ALIASES.items():
        for alias in aliases:
            table.setdefault(normalize_header(alias), canonical)
    for col in kind.columns:
        for alias in col.aliases:
            table.setdefault(normalize_header(alias), col.name)
    return table
