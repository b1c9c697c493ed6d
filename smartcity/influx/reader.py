"""Reading InfluxDB (the API, KPIs, open data), through the writer's HTTP client.

Every value reaches InfluxDB as a bound parameter, identifiers and durations included
(``{"identifier": ...}``, ``{"duration": ...}``, supported since InfluxDB 1.6): no request input
is ever spliced into InfluxQL text.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from smartcity.influx.errors import InfluxUnavailable, QueryFailed
from smartcity.influx.writer import InfluxWriter
from smartcity.settings import InfluxSettings

#: Answers longer than this (bytes; ~100 rows) are decoded into rows in a worker thread.
BIG_ANSWER = 32 * 1024


@dataclass(frozen=True, slots=True)
class Row:
    """One result row: its measurement, the series' tags, time and the selected columns."""

    measurement: str
    tags: dict[str, str]
    time: datetime
    values: dict[str, Any]


def ident(name: str) -> dict[str, str]:
    """A bound identifier (measurement or field name)."""
    return {"identifier": name}


def duration(seconds: float) -> dict[str, str]:
    return {"duration": f"{int(seconds)}s"}


def at(t: datetime) -> str:
    """A bound time: RFC 3339 in UTC with microseconds."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class InfluxReader:
    def __init__(self, settings: InfluxSettings, timeout: float = 20.0) -> None:
        self.client = InfluxWriter(settings, timeout=timeout)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def rows(self, q: str, params: Mapping[str, object] | None = None) -> list[Row]:
        """All rows of the (single-statement) query ``q``."""
        try:
            raw = await self.client.query_bytes(q, params, epoch="ms")
        except httpx.HTTPStatusError as exc:
            text = exc.response.text[:300]
            if exc.response.status_code >= 500:
                raise InfluxUnavailable(f"InfluxDB answered {exc.response.status_code}") from exc
            raise QueryFailed(f"InfluxDB refused the query: {text}") from exc
        except httpx.TransportError as exc:
            raise InfluxUnavailable(f"InfluxDB unreachable: {type(exc).__name__}") from exc
        if len(raw) > BIG_ANSWER:
            # thousands of rows (a city's snapshot is megabytes): decode them off the event
            # loop, so requests keep flowing while the live state refreshes
            return await asyncio.to_thread(_decode, raw)
        return _decode(raw)

    async def ping(self) -> bool:
        return await self.client.ping()


def _decode(raw: bytes) -> list[Row]:
    results: list[dict[str, Any]] = json.loads(raw).get("results", [])
    if not results:
        return []
    result = results[0]
    if "error" in result:
        if "database not found" in result["error"]:
            return []  # nothing ingested yet: an empty city, not an error
        raise QueryFailed(f"InfluxDB refused the query: {result['error']}")
    return _rows(result.get("series", []))


def _rows(series: list[dict[str, Any]]) -> list[Row]:
    out: list[Row] = []
    for one in series:
        columns = one["columns"]
        tags = one.get("tags") or {}
        for values in one["values"]:
            record = dict(zip(columns, values, strict=True))
            stamp = datetime.fromtimestamp(record.pop("time") / 1000, UTC)
            out.append(Row(one["name"], tags, stamp, record))
    return out
