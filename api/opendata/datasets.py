"""What an open dataset is: its columns, metadata and the query that builds it; and the
registry's device positions, the one dataset of no single type.

Each device type declares its own datasets in its API module (``api/kpis/<type>.py``,
``DeviceKpis.datasets``); ``api.opendata.registry`` lists them all. Only aggregates leave the
platform: daily figures per zone, stream or station, and the registry's street-furniture
positions. Nothing describes a person: charging sessions are summed per zone and day.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.registry import crud
from smartcity import retention
from smartcity.city import TIMEZONE
from smartcity.influx import InfluxReader, Row, at, ident
from smartcity.retention import Resolution

LOCAL = ZoneInfo(TIMEZONE)
Spatial = Literal["zone", "point"]


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: Literal["date", "string", "integer", "number"]
    it: str
    en: str


@dataclass(frozen=True, slots=True)
class Days:
    """Local calendar days, first to last inclusive (the city's days, not UTC ones)."""

    first: date
    last: date

    def params(self) -> dict[str, object]:
        start = datetime.combine(self.first, time(), LOCAL)
        end = datetime.combine(self.last + timedelta(days=1), time(), LOCAL)
        return {"from": at(start), "to": at(end), "tz": TIMEZONE}


Builder = Callable[[InfluxReader, Engine, Days], Awaitable[list[dict[str, Any]]]]


@dataclass(frozen=True, slots=True)
class Dataset:
    id: str
    title_it: str
    title_en: str
    description_it: str
    description_en: str
    #: EU data theme (publications.europa.eu authority table data-theme)
    theme: str
    #: EU frequency (publications.europa.eu authority table frequency)
    frequency: str
    keywords: tuple[str, ...]
    columns: tuple[Column, ...]
    spatial: Spatial
    daily: bool
    build: Builder


def day_of(r: Row) -> str:
    """The Rome day a row of ``GROUP BY time(1d) ... tz(...)`` stands for."""
    return r.time.astimezone(LOCAL).date().isoformat()


def rounded(value: Any, digits: int = 3) -> float | None:
    return round(float(value), digits) if value is not None else None


def parts(days: Days) -> list[tuple[Resolution, Days]]:
    """Which days to read from hourly rollups and which from raw readings: a range of days
    long enough for rollups (``retention.choose``) reads them for every local day wholly
    rolled up, raw readings for the rest. (Hourly, not daily: the city's days are local, and
    a local day is whole UTC hours, never whole UTC days.)"""
    start = datetime.combine(days.first, time(), LOCAL)
    end = datetime.combine(days.last + timedelta(days=1), time(), LOCAL)
    if retention.choose(start, end) is retention.RAW:
        return [(retention.RAW, days)]
    # the first local day not wholly rolled up yet
    cut = retention.settled(retention.HOURLY).astimezone(LOCAL).date()
    out: list[tuple[Resolution, Days]] = []
    if cut > days.first:
        out.append((retention.HOURLY, Days(days.first, min(days.last, cut - timedelta(days=1)))))
    if cut <= days.last:
        out.append((retention.RAW, Days(max(days.first, cut), days.last)))
    return out


async def read_days(
    db: InfluxReader, queries: dict[str, str], days: Days, params: dict[str, object]
) -> list[Row]:
    """The rows of a dataset's query per day, from rollups or raw: ``queries`` by resolution
    name (``raw`` reads ``$m``; ``hourly`` reads the rollup ``$rp.$m``, with the rollups'
    field names, ``smartcity.storage.rollup_field``); all raw on a database without rollups."""
    rows: list[Row] = []
    for res, part in parts(days):
        p = {**params, **part.params()}
        if res is not retention.RAW:
            got = await retention.rollup_rows(db, queries["hourly"], {**p, "rp": ident(res.policy)})
            if got is not None:
                rows += got
                continue
        rows += await db.rows(queries["raw"], p)
    return rows


async def _devices(_db: InfluxReader, engine: Engine, _days: Days) -> list[dict[str, Any]]:
    import asyncio

    def read() -> list[dict[str, Any]]:
        with Session(engine) as session:
            return [
                {
                    "device_id": d.device_id,
                    "device_type": d.device_type,
                    "zone": d.zone,
                    "lat": d.lat,
                    "lon": d.lon,
                    "installed_on": d.installed_on.isoformat() if d.installed_on else None,
                }
                for d in crud.all_devices(session)
            ]

    return await asyncio.to_thread(read)


DAY = Column("day", "date", "Giorno (ora di Roma)", "Day (Rome time)")
ZONE = Column("zone", "string", "Quartiere", "Zone (quartiere)")

#: The registry's devices of every type, where they stand.
DEVICES = Dataset(
    "devices",
    "Dispositivi smart city: posizione",
    "Smart-city devices: locations",
    "Lampioni, cassonetti, colonnine di ricarica e centraline dell'aria con sensore: tipo, "
    "quartiere e posizione.",
    "Sensor-equipped street lights, bins, charging stations and air-quality stations: "
    "type, zone and position.",
    "REGI",
    "IRREG",
    ("smart city", "arredo urbano", "sensori"),
    (
        Column("device_id", "string", "Identificativo", "Identifier"),
        Column("device_type", "string", "Tipo", "Type"),
        ZONE,
        Column("lat", "number", "Latitudine (WGS84)", "Latitude (WGS84)"),
        Column("lon", "number", "Longitudine (WGS84)", "Longitude (WGS84)"),
        Column("installed_on", "date", "Data di installazione", "Installation date"),
    ),
    "point",
    False,
    _devices,
)
