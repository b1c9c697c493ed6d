"""Air quality: alerts when a station crosses an EU limit or a sensor fails, zone figures, and
the open dataset of daily means per station. Its KPIs (PM10 days and NO2 hours over the limits
this year, the PM2.5 annual mean, the index band now) are declared with the device type
(``Airquality.kpis``): the API and the board compute them from there.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.kpis.base import AlertDraft, Check, DeviceKpis, DeviceState, Snapshot
from api.opendata.datasets import DAY, ZONE, Column, Dataset, Days, day_of, read_days, rounded
from api.registry import crud
from api.schemas.alerts import AlertKind
from api.settings import ApiSettings
from smartcity.devices.airquality import (
    NO2_HOURLY_LIMIT,
    O3_INFORMATION_THRESHOLD,
    PM10_DAILY_LIMIT,
    POLLUTANTS,
    Airquality,
)
from smartcity.influx import InfluxReader, ident
from smartcity.storage import rollup_field

#: Alerts on a station's latest reading: kind, pollutant, limit.
LIMIT_ALERTS: tuple[tuple[AlertKind, str, float], ...] = (
    ("pm10_over_limit", "pm10", PM10_DAILY_LIMIT),
    ("no2_over_limit", "no2", NO2_HOURLY_LIMIT),
    ("o3_over_threshold", "o3", O3_INFORMATION_THRESHOLD),
)


def fault(d: DeviceState, _s: ApiSettings | None = None) -> bool:
    return d.fields.get("status") == "sensorFault"


_C = rollup_field  # the rollups' field names, short: _C("pm10", "sum") is "pm10_sum"
#: Each station's daily means, from raw readings and from hourly rollups (a mean of hours is
#: their sums over their counts, so it weighs every reading as the raw mean does).
DAILY_MEAN_QUERIES = {
    res: f"SELECT {means} FROM {src} WHERE time >= $from AND time < $to "
    'GROUP BY time(1d), "device_id", "zone" fill(none) tz($tz)'
    for res, src, means in (
        ("raw", "$m", ", ".join(f'mean("{p}") AS "{p}"' for p in POLLUTANTS)),
        ("hourly", "$rp.$m", ", ".join(
            f'sum("{_C(p, "sum")}") / sum("{_C(p, "count")}") AS "{p}"' for p in POLLUTANTS
        )),
    )
}  # fmt: skip


async def _airquality_daily(db: InfluxReader, engine: Engine, days: Days) -> list[dict[str, Any]]:
    """Each station's daily mean of each pollutant, where the registry places it."""
    import asyncio

    rows = await read_days(db, DAILY_MEAN_QUERIES, days, {"m": ident(Airquality.measurement())})

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
    zone_counts: ClassVar[dict[str, Check]] = {"air_stations_faulted": fault}

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
