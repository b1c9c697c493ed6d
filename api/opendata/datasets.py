"""The open datasets: what each holds, and the query that builds it.

Only aggregates leave the platform: daily figures per zone (and per waste stream), and the
registry's street-furniture positions. Nothing here describes a person: charging sessions are
summed per zone and day, never listed.
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
from smartcity.devices.evcharger import Evcharger
from smartcity.devices.streetlight import Streetlight
from smartcity.devices.wastebin import Wastebin
from smartcity.influx import InfluxReader, Row, at, ident
from smartcity.retention import Resolution
from smartcity.storage import rollup_field

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


def _day(r: Row) -> str:
    return r.time.astimezone(LOCAL).date().isoformat()


def _num(value: Any, digits: int = 3) -> float | None:
    return round(float(value), digits) if value is not None else None


def _parts(days: Days) -> list[tuple[Resolution, Days]]:
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


async def _read(
    db: InfluxReader, queries: dict[str, str], days: Days, params: dict[str, object]
) -> list[Row]:
    """The rows of a query per day, from rollups or raw (``queries`` by resolution name; a
    rollup query reads ``$rp.$m``); all raw on a database without rollups."""
    rows: list[Row] = []
    for res, part in _parts(days):
        p = {**params, **part.params()}
        if res is not retention.RAW:
            got = await retention.rollup_rows(db, queries["hourly"], {**p, "rp": ident(res.policy)})
            if got is not None:
                rows += got
                continue
        rows += await db.rows(queries["raw"], p)
    return rows


_C = rollup_field  # the rollups' field names, short: _C("energy", "sum") is "energy_sum"
ENERGY = {
    res: "SELECT sum(s) AS energy_kwh, count(s) AS lamps FROM (SELECT "
    f"{spread} AS s FROM {src} WHERE time >= $from AND time < $to "
    'GROUP BY time(1d), "device_id", "zone" fill(none) tz($tz)) '
    'WHERE time >= $from AND time < $to GROUP BY time(1d), "zone" fill(none) tz($tz)'
    for res, src, spread in (
        ("raw", "$m", 'spread("totalActiveEnergyImport")'),
        # a meter's growth in a day: its highest reading less its lowest, as spread() does
        ("hourly", "$rp.$m", f'max("{_C("totalActiveEnergyImport", "max")}") - '
         f'min("{_C("totalActiveEnergyImport", "min")}")'),
    )
}  # fmt: skip
FAILURES = {
    res: f'SELECT sum("count") AS failures FROM {src} WHERE "status" != $ok '
    'AND time >= $from AND time < $to GROUP BY time(1d), "zone" fill(none) tz($tz)'
    for res, src in (("raw", "$m"), ("hourly", "$rp.$m"))
}
COLLECTIONS = {
    res: f'SELECT sum("count") AS collections, {level} AS level FROM {src} '
    'WHERE "kind" = $kind AND time >= $from AND time < $to '
    'GROUP BY time(1d), "zone", "waste_kind" fill(none) tz($tz)'
    for res, src, level in (
        ("raw", "$m", 'mean("collectedLevel")'),
        ("hourly", "$rp.$m", f'sum("{_C("collectedLevel", "sum")}") / '
         f'sum("{_C("collectedLevel", "count")}")'),
    )
}  # fmt: skip
SESSIONS = {
    res: f'SELECT sum("count") AS sessions, {energy} AS energy, {seconds} AS seconds '
    f'FROM {src} WHERE "kind" = $kind AND time >= $from AND time < $to '
    'GROUP BY time(1d), "zone" fill(none) tz($tz)'
    for res, src, energy, seconds in (
        ("raw", "$m", 'sum("energy")', 'mean("duration")'),
        ("hourly", "$rp.$m", f'sum("{_C("energy", "sum")}")',
         f'sum("{_C("duration", "sum")}") / sum("{_C("duration", "count")}")'),
    )
}  # fmt: skip


async def _streetlight_energy(db: InfluxReader, _e: Engine, days: Days) -> list[dict[str, Any]]:
    energy = await _read(db, ENERGY, days, {"m": ident(Streetlight.measurement())})
    failures = await _read(
        db, FAILURES, days, {"m": ident(Streetlight.event_measurement()), "ok": "ok"}
    )
    failed = {(_day(r), r.tags["zone"]): int(r.values["failures"]) for r in failures}
    rows = [
        {
            "day": _day(r),
            "zone": r.tags["zone"],
            "lamps": int(r.values["lamps"]),
            "energy_kwh": _num(r.values["energy_kwh"]),
            "failures": failed.get((_day(r), r.tags["zone"]), 0),
        }
        for r in energy
    ]
    return sorted(rows, key=lambda x: (x["day"], x["zone"]))


async def _wastebin_collections(db: InfluxReader, _e: Engine, days: Days) -> list[dict[str, Any]]:
    rows = await _read(
        db, COLLECTIONS, days, {"m": ident(Wastebin.event_measurement()), "kind": "emptied"}
    )
    out = [
        {
            "day": _day(r),
            "zone": r.tags["zone"],
            "stream": r.tags["waste_kind"],
            "collections": int(r.values["collections"]),
            "mean_collected_level": _num(r.values["level"]),
        }
        for r in rows
    ]
    return sorted(out, key=lambda x: (x["day"], x["zone"], x["stream"]))


async def _evcharger_usage(db: InfluxReader, _e: Engine, days: Days) -> list[dict[str, Any]]:
    rows = await _read(
        db, SESSIONS, days, {"m": ident(Evcharger.event_measurement()), "kind": "sessionStop"}
    )
    out = [
        {
            "day": _day(r),
            "zone": r.tags["zone"],
            "sessions": int(r.values["sessions"]),
            "energy_kwh": _num(r.values["energy"]),
            "mean_duration_min": _num(float(r.values["seconds"]) / 60, 1),
        }
        for r in rows
    ]
    return sorted(out, key=lambda x: (x["day"], x["zone"]))


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

DATASETS: dict[str, Dataset] = {
    d.id: d
    for d in (
        Dataset(
            "streetlight-energy-daily",
            "Illuminazione pubblica: energia giornaliera per quartiere",
            "Public lighting: daily energy by zone",
            "Energia consumata dai punti luce telegestiti, punti luce attivi e guasti segnalati, "
            "per giorno e quartiere.",
            "Energy drawn by remotely managed street lights, lamps reporting and failures "
            "reported, by day and zone.",
            "ENER",
            "DAILY",
            ("illuminazione pubblica", "energia", "smart city"),
            (
                DAY,
                ZONE,
                Column("lamps", "integer", "Punti luce che hanno trasmesso", "Lamps reporting"),
                Column("energy_kwh", "number", "Energia consumata (kWh)", "Energy drawn (kWh)"),
                Column("failures", "integer", "Guasti segnalati", "Failures reported"),
            ),
            "zone",
            True,
            _streetlight_energy,
        ),
        Dataset(
            "wastebin-collections-daily",
            "Rifiuti: svuotamenti giornalieri per quartiere e flusso",
            "Waste: daily collections by zone and stream",
            "Svuotamenti dei cassonetti con sensore e riempimento medio allo svuotamento, per "
            "giorno, quartiere e flusso di raccolta.",
            "Collections of sensor-equipped bins and mean fill level when emptied, by day, zone "
            "and collection stream.",
            "ENVI",
            "DAILY",
            ("rifiuti", "raccolta differenziata", "economia circolare"),
            (
                DAY,
                ZONE,
                Column("stream", "string", "Flusso di raccolta", "Collection stream"),
                Column("collections", "integer", "Svuotamenti", "Collections"),
                Column(
                    "mean_collected_level", "number", "Riempimento medio (0-1)", "Mean fill (0-1)"
                ),
            ),
            "zone",
            True,
            _wastebin_collections,
        ),
        Dataset(
            "evcharger-usage-daily",
            "Ricarica veicoli elettrici: utilizzo giornaliero per quartiere",
            "EV charging: daily use by zone",
            "Ricariche concluse, energia erogata e durata media delle ricariche alle colonnine "
            "pubbliche, per giorno e quartiere.",
            "Charging sessions completed, energy delivered and mean session length at public "
            "charging stations, by day and zone.",
            "TRAN",
            "DAILY",
            ("mobilità elettrica", "ricarica", "energia"),
            (
                DAY,
                ZONE,
                Column("sessions", "integer", "Ricariche concluse", "Sessions completed"),
                Column("energy_kwh", "number", "Energia erogata (kWh)", "Energy delivered (kWh)"),
                Column("mean_duration_min", "number", "Durata media (min)", "Mean duration (min)"),
            ),
            "zone",
            True,
            _evcharger_usage,
        ),
        Dataset(
            "devices",
            "Dispositivi smart city: posizione",
            "Smart-city devices: locations",
            "Lampioni, cassonetti e colonnine di ricarica con sensore: tipo, quartiere e "
            "posizione.",
            "Sensor-equipped street lights, bins and charging stations: type, zone and position.",
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
        ),
    )
}
