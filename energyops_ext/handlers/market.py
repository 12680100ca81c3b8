"""Market snapshot: stats, per-block rows for charts, and streamed csv / xlsx exports."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import BadRequest
from ..ingest import coverage, market
from ..ingest.coverage import MissingRun
from ..ingest.market import DateRange
from .base import EnergyOpsHandler, allow

_READ_CHUNK = 1 << 20


class MarketHandler(EnergyOpsHandler):
    def date_span(self) -> DateRange:
        return market.date_range(
            self.get_query_argument("date", None) or None,
            self.get_query_argument("from", None) or None,
            self.get_query_argument("to", None) or None,
        )


class MarketStatsHandler(MarketHandler):
    @allow("read")
    async def get(self) -> None:
        span = self.date_span()
        self.write_json(await self.services.db.read(lambda s: market.stats(s, span)))


class MarketSnapshotHandler(MarketHandler):
    @allow("read")
    async def get(self) -> None:
        span = self.date_span()
        self.write_json(await self.services.db.read(lambda s: market.snapshot(s, span)))


class MarketExportHandler(MarketHandler):
    @allow("read")
    async def get(self) -> None:
        span = self.date_span()
        fmt = (self.get_query_argument("format", None) or "csv").lower()
        if fmt not in ("csv", "xlsx"):
            raise BadRequest(
                f"format must be csv or xlsx, got {fmt!r}",
                code="invalid_parameter",
                details={"field": "format"},
            )
        group = (self.get_query_argument("group", None) or "block").lower()
        if group not in ("block", "plant"):
            raise BadRequest(
                f"group must be block or plant, got {group!r}",
                code="invalid_parameter",
                details={"field": "group"},
            )
        if span.start is None and span.end is None:
            last = await self.services.db.read(market.latest_date)
            span = DateRange(last, last) if last else span
        name = "market-" + (
            span.start.isoformat()
            if span.days == 1 and span.start
            else f"{span.start or 'start'}-to-{span.end or 'end'}"
        )
        by_plant = group == "plant"
        missing = await self.services.db.read(
            lambda s: coverage.missing_blocks(s, span.start, span.end)
        )
        for header, value in coverage.missing_headers(missing).items():
            self.set_header(header, value)
        self.set_header("Content-Disposition", f'attachment; filename="{name}.{fmt}"')
        if fmt == "csv":
            self.set_header("Content-Type", "text/csv; charset=UTF-8")
            chunks = market.csv_chunks(self.services.db.read_engine, span, by_plant)
        else:
            self.set_header(
                "Content-Type",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            )
            path = await asyncio.to_thread(self._xlsx, span, by_plant, missing)
            chunks = _file_chunks(path)
        await self._stream(chunks)

    def _xlsx(self, span: DateRange, by_plant: bool, missing: list[MissingRun]) -> Path:
        directory = self.services.settings.data_dir / "tmp"
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=directory, prefix="export-", suffix=".xlsx", delete=False
        ) as fh:
            path = Path(fh.name)
        try:
            market.write_xlsx(self.services.db.read_engine, span, by_plant, path, missing)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    async def _stream(self, chunks: Iterator[bytes]) -> None:
        try:
            while True:
                chunk = await asyncio.to_thread(next, chunks, None)
                if chunk is None:
                    break
                self.write(chunk)
                await self.flush()
        finally:
            await asyncio.to_thread(chunks.close)  # type: ignore[attr-defined]
        self.finish()


def _file_chunks(path: Path) -> Iterator[bytes]:
    """A file's bytes in chunks; the file is deleted once read (or abandoned)."""
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(_READ_CHUNK):
                yield chunk
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


routes = [
    (r"/market/stats", MarketStatsHandler),
    (r"/market/snapshot", MarketSnapshotHandler),
    (r"/market/export", MarketExportHandler),
]
