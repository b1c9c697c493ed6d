"""Air-quality KPIs against EU law: PM10 days and NO2 hours over their limits this year, the
PM2.5 annual mean, and the European Air Quality Index band of each station now (its latest
reading's, as stored with it: the boards' map shows the same).

Each figure is per station (the law counts exceedances per sampling point); the KPI's value is
the worst station's, its breakdown every station's. "This year" is the calendar year in Rome,
as the law's "calendar year" is read by the regional agency.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.kpis.base import AlertDraft, Check, DeviceKpis, DeviceState, Figure, Period, Snapshot
from api.opendata.datasets import DAY, ZONE, Column, Dataset, Days, day_of, rounded
from api.registry import crud
from api.schemas.alerts import AlertKind
from api.settings import ApiSettings
from smartcity.city import TIMEZONE
from smartcity.devices.airquality import (
    EAQI_BANDS,
    EAQI_FIELD,
    NO2_HOURLY_LIMIT,
    O3_INFORMATION_THRESHOLD,
    PM10_DAILY_LIMIT,
    POLLUTANTS,
    Airquality,
)
from smartcity.influx import InfluxReader, duration, ident

LOCAL = ZoneInfo(TIMEZONE)
#: Exceedances per station: the periods (local days, hours) whose mean is over the limit.
EXCEEDANCES = (
    "SELECT count(m) AS v FROM (SELECT mean($f) AS m FROM $m WHERE time >= $from AND "
    "time <= $to GROUP BY time($p), device_id fill(none) tz($tz)) WHERE m > $limit "
    "GROUP BY device_id"
)
MEAN_PER_STATION = (
    "SELECT mean($f) AS v FROM $m WHERE time > $from AND time <= $to GROUP BY device_id"
)
#: Alerts on a station's latest reading: kind, pollutant, limit.
LIMIT_ALERTS: tuple[tuple[AlertKind, str, float], ...] = (
    ("pm10_over_limit", "pm10", PM10_DAILY_LIMIT),
    ("no2_over_limit", "no2", NO2_HOURLY_LIMIT),
    ("o3_over_threshold", "o3", O3_INFORMATION_THRESHOLD),
)
#: Window keys: "<figure>/<device id>".
SEP = "/"


def year_start(end: datetime) -> datetime:
    """Midnight of 1 January in Rome, of the year ``end`` falls in there."""
    local = end.astimezone(LOCAL)
    return local.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)


def fault(d: DeviceState, _s: ApiSettings | None = None) -> bool:
    return d.fields.get("status") == "sensorFault"


def per_station(window: dict[str, float], figure: str) -> dict[str, float]:
    prefix = figure + SEP
    return {k[len(prefix) :]: v for k, v in window.items() if k.startswith(prefix)}


def worst(values: dict[str, float], digits: int = 1) -> Figure:
    """The worst station's figure, with every station's in the breakdown."""
    rounded = {k: round(v, digits) for k, v in sorted(values.items())}
    return Figure(max(rounded.values()) if rounded else None, rounded or None)


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
            "day": day_of(r),
            "station": r.tags["device_id"],
            "zone": r.tags["zone"],
            "lat": where.get(r.tags["device_id"], (None, None))[0],
            "lon": where.get(r.tags["device_id"], (None, None))[1],
            **{p: rounded(r.values[p], 2 if p == "co" else 1) for p in POLLUTANTS},
        }
        for r in rows
    ]
    return sorted(out, key=lambda x: (x["day"], x["station"]))


#: Its open dataset (``/v1/opendata/airquality-daily``).
DAILY_MEANS = Dataset(
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
        Column("no2", "number", "Biossido di azoto NO2 (µg/m³)", "Nitrogen dioxide (µg/m³)"),
        Column("o3", "number", "Ozono O3 (µg/m³)", "Ozone (µg/m³)"),
        Column("co", "number", "Monossido di carbonio CO (mg/m³)", "Carbon monoxide (mg/m³)"),
    ),
    "point",
    True,
    _airquality_daily,
)


class AirqualityKpis(DeviceKpis):
    device = Airquality
    datasets = (DAILY_MEANS,)
    alert_messages: ClassVar[dict[str, tuple[str, str]]] = {
        "pm10_over_limit": (
            "PM10 a {value} µg/m³, oltre il limite giornaliero di {limit:g}",
            "PM10 at {value} µg/m³, over the daily limit of {limit:g}",
        ),
        "no2_over_limit": (
            "NO2 a {value} µg/m³, oltre il limite orario di {limit:g}",
            "NO2 at {value} µg/m³, over the hourly limit of {limit:g}",
        ),
        "o3_over_threshold": (
            "Ozono a {value} µg/m³, oltre la soglia di informazione di {limit:g}",
            "Ozone at {value} µg/m³, over the information threshold of {limit:g}",
        ),
        "station_faulted": (
            "Centralina della qualità dell'aria guasta",
            "Air-quality station faulted",
        ),
    }
    kpi_ids = (
        "stations_reporting",
        "pm10_days_over_limit",
        "no2_hours_over_limit",
        "pm25_annual_mean",
        "eaqi_band",
    )
    zone_counts: ClassVar[dict[str, Check]] = {"air_stations_faulted": fault}

    async def window(
        self, db: InfluxReader, end: datetime, settings: ApiSettings
    ) -> dict[str, float]:
        m = ident(Airquality.measurement())
        year = Period(year_start(end), end).params()
        out: dict[str, float] = {}
        for name, field, seconds, limit in (
            ("pm10_days", "pm10", 86_400, PM10_DAILY_LIMIT),
            ("no2_hours", "no2", 3_600, NO2_HOURLY_LIMIT),
        ):
            rows = await db.rows(
                EXCEEDANCES,
                {
                    "m": m,
                    "f": ident(field),
                    "p": duration(seconds),
                    "limit": limit,
                    "tz": TIMEZONE,
                    **year,
                },
            )
            out |= {f"{name}{SEP}{r.tags['device_id']}": float(r.values["v"]) for r in rows}
        rows = await db.rows(MEAN_PER_STATION, {"m": m, "f": ident("pm25"), **year})
        out |= {f"pm25_year{SEP}{r.tags['device_id']}": float(r.values["v"]) for r in rows}
        return out

    def kpis(
        self, snap: Snapshot, window: dict[str, float], settings: ApiSettings
    ) -> dict[str, Figure]:
        fresh = snap.fresh
        # a station that never exceeded a limit this year counts 0 (count() returns no row)
        zero = {d.device_id: 0.0 for d in snap.devices}
        bands = {d.device_id: int(d.fields[EAQI_FIELD]) for d in fresh if d.fields.get(EAQI_FIELD)}
        return {
            "stations_reporting": Figure(len(fresh)),
            "pm10_days_over_limit": worst(zero | per_station(window, "pm10_days"), 0),
            "no2_hours_over_limit": worst(zero | per_station(window, "no2_hours"), 0),
            "pm25_annual_mean": worst(per_station(window, "pm25_year")),
            "eaqi_band": Figure(
                max(bands.values()) if bands else None,
                {d: EAQI_BANDS[b - 1] for d, b in sorted(bands.items())} or None,
            ),
        }

    def alerts(self, snap: Snapshot, settings: ApiSettings) -> list[AlertDraft]:
        """From each fresh station's latest reading: a sensor fault, and a concentration over
        the hourly NO2 limit, the daily PM10 limit or the ozone information threshold (the
        reading is a short mean: the alert says the station is crossing the limit now)."""
        out = []
        for d in snap.fresh:
            if fault(d):
                out.append(AlertDraft("station_faulted", "warning", d, "sensorFault"))
                continue
            for kind, field, limit in LIMIT_ALERTS:
                value = d.fields.get(field)
                if isinstance(value, int | float) and value > limit:
                    out.append(AlertDraft(kind, "warning", d, value, {"limit": limit}))
        return out
