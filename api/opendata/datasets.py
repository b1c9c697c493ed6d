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
from smartcity.city import TIMEZONE
from smartcity.devices.airquality import POLLUTANTS, Airquality
from smartcity.devices.evcharger import Evcharger
from smartcity.devices.streetlight import Streetlight
from smartcity.devices.wastebin import Wastebin
from smartcity.influx import InfluxReader, Row, at, ident

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


async def _streetlight_energy(db: InfluxReader, _e: Engine, days: Days) -> list[dict[str, Any]]:
    p = {"m": ident(Streetlight.measurement()), **days.params()}
    energy = await db.rows(
        "SELECT sum(s) AS energy_kwh, count(s) AS lamps FROM (SELECT "
        'spread("totalActiveEnergyImport") AS s FROM $m WHERE time >= $from AND time < $to '
        'GROUP BY time(1d), "device_id", "zone" fill(none) tz($tz)) '
        'WHERE time >= $from AND time < $to GROUP BY time(1d), "zone" fill(none) tz($tz)',
        p,
    )
    failures = await db.rows(
        'SELECT sum("count") AS failures FROM $m WHERE "status" != $ok '
        'AND time >= $from AND time < $to GROUP BY time(1d), "zone" fill(none) tz($tz)',
        {**p, "m": ident(Streetlight.event_measurement()), "ok": "ok"},
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
    rows = await db.rows(
        'SELECT sum("count") AS collections, mean("collectedLevel") AS level FROM $m '
        'WHERE "kind" = $kind AND time >= $from AND time < $to '
        'GROUP BY time(1d), "zone", "waste_kind" fill(none) tz($tz)',
        {"m": ident(Wastebin.event_measurement()), "kind": "emptied", **days.params()},
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
    rows = await db.rows(
        'SELECT sum("count") AS sessions, sum("energy") AS energy, mean("duration") AS seconds '
        'FROM $m WHERE "kind" = $kind AND time >= $from AND time < $to '
        'GROUP BY time(1d), "zone" fill(none) tz($tz)',
        {"m": ident(Evcharger.event_measurement()), "kind": "sessionStop", **days.params()},
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


async def _airquality_daily(db: InfluxReader, engine: Engine, days: Days) -> list[dict[str, Any]]:
    """Each station's daily mean of each pollutant, where the registry places it."""
    import asyncio

    means = ", ".join(f'mean("{p}") AS "{p}"' for p in POLLUTANTS)
    rows = await db.rows(
        f"SELECT {means} FROM $m WHERE time >= $from AND time < $to "
        'GROUP BY time(1d), "device_id", "zone" fill(none) tz($tz)',
        {"m": ident(Airquality.measurement()), **days.params()},
    )

    def places() -> dict[str, tuple[float | None, float | None]]:
        with Session(engine) as session:
            return {d.device_id: (d.lat, d.lon) for d in crud.all_devices(session)}

    where = await asyncio.to_thread(places)
    out = [
        {
            "day": _day(r),
            "station": r.tags["device_id"],
            "zone": r.tags["zone"],
            "lat": where.get(r.tags["device_id"], (None, None))[0],
            "lon": where.get(r.tags["device_id"], (None, None))[1],
            **{p: _num(r.values[p], 2 if p == "co" else 1) for p in POLLUTANTS},
        }
        for r in rows
    ]
    return sorted(out, key=lambda x: (x["day"], x["station"]))


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
            "airquality-daily",
            "Qualità dell'aria: medie giornaliere per centralina",
            "Air quality: daily means by station",
            "Media giornaliera (ora di Roma) di PM10, PM2.5, NO2 e ozono in µg/m³ e di CO in "
            "mg/m³ per centralina, con la sua posizione. Dati non validati.",
            "Daily mean (Rome time) of PM10, PM2.5, NO2 and ozone in µg/m³ and of CO in mg/m³ "
            "per station, with its position. Unvalidated data.",
            "ENVI",
            "DAILY",
            ("qualità dell'aria", "inquinamento", "PM10", "ambiente"),
            (
                DAY,
                Column("station", "string", "Centralina", "Station"),
                ZONE,
                Column("lat", "number", "Latitudine (WGS84)", "Latitude (WGS84)"),
                Column("lon", "number", "Longitudine (WGS84)", "Longitude (WGS84)"),
                Column("pm10", "number", "PM10 (µg/m³)", "PM10 (µg/m³)"),
                Column("pm25", "number", "PM2.5 (µg/m³)", "PM2.5 (µg/m³)"),
                Column(
                    "no2", "number", "Biossido di azoto NO2 (µg/m³)", "Nitrogen dioxide (µg/m³)"
                ),
                Column("o3", "number", "Ozono O3 (µg/m³)", "Ozone (µg/m³)"),
                Column(
                    "co", "number", "Monossido di carbonio CO (mg/m³)", "Carbon monoxide (mg/m³)"
                ),
            ),
            "point",
            True,
            _airquality_daily,
        ),
        Dataset(
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
        ),
    )
}
