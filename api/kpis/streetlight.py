"""Public lighting KPIs: lamps on and failed, energy drawn, and energy saved by dimming."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import Engine

from api.kpis.base import (
    JOULES_PER_KWH,
    AlertDraft,
    Check,
    DeviceKpis,
    DeviceState,
    Figure,
    Period,
    Snapshot,
    scalar,
    sum_of_spreads,
)
from api.opendata.datasets import DAY, ZONE, Column, Dataset, Days, day_of, rounded
from api.settings import ApiSettings
from smartcity.devices.streetlight import Streetlight
from smartcity.influx import InfluxReader, ident


def lit(d: DeviceState, _s: ApiSettings | None = None) -> bool:
    """A lamp is on when it draws power (a dead lamp told to be on draws none)."""
    return float(d.fields.get("activePower") or 0.0) > 0.0


def failed(d: DeviceState, _s: ApiSettings | None = None) -> bool:
    status: object = d.fields.get("status", "ok")
    return status != "ok"


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
    failed = {(day_of(r), r.tags["zone"]): int(r.values["failures"]) for r in failures}
    rows = [
        {
            "day": day_of(r),
            "zone": r.tags["zone"],
            "lamps": int(r.values["lamps"]),
            "energy_kwh": rounded(r.values["energy_kwh"]),
            "failures": failed.get((day_of(r), r.tags["zone"]), 0),
        }
        for r in energy
    ]
    return sorted(rows, key=lambda x: (x["day"], x["zone"]))


#: Its open dataset (``/v1/opendata/streetlight-energy-daily``).
ENERGY_DAILY = Dataset(
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
)


class StreetlightKpis(DeviceKpis):
    device = Streetlight
    datasets = (ENERGY_DAILY,)
    alert_messages: ClassVar[dict[str, tuple[str, str]]] = {
        "lamp_failure": ("Lampione guasto ({value})", "Lamp failure ({value})"),
    }
    kpi_ids = (
        "lamps_reporting",
        "lamps_on",
        "lamps_failed",
        "energy_24h",
        "energy_saved_24h",
        "dimming_saving_share_24h",
    )
    zone_counts: ClassVar[dict[str, Check]] = {"lamps_on": lit, "lamps_failed": failed}

    async def window(
        self, db: InfluxReader, end: datetime, settings: ApiSettings
    ) -> dict[str, float]:
        period = Period.last(end, 24)
        m = {"m": ident(Streetlight.measurement()), **period.params(), "zero": 0.0}
        # Each reading stands for one reporting interval of the lamp at that power.
        kwh_per_reading_w = Streetlight.report_interval_s / JOULES_PER_KWH
        full = await scalar(
            db,
            'SELECT sum("ratedPower") AS v FROM $m '
            'WHERE time > $from AND time <= $to AND "activePower" > $zero',
            m,
        )
        saved = await scalar(
            db,
            'SELECT sum(saved) AS v FROM (SELECT "ratedPower" - "activePower" AS saved FROM $m '
            'WHERE time > $from AND time <= $to AND "powerState" = $low AND "activePower" > $zero)',
            {**m, "low": "low"},
        )
        return {
            "energy_24h": await sum_of_spreads(
                db, Streetlight.measurement(), "totalActiveEnergyImport", period
            ),
            "energy_saved_24h": saved * kwh_per_reading_w,
            "energy_full_power_24h": full * kwh_per_reading_w,
        }

    def kpis(
        self, snap: Snapshot, window: dict[str, float], settings: ApiSettings
    ) -> dict[str, Figure]:
        fresh = snap.fresh
        full = window["energy_full_power_24h"]
        return {
            "lamps_reporting": Figure(len(fresh)),
            "lamps_on": Figure(sum(lit(d) for d in fresh)),
            "lamps_failed": Figure(sum(failed(d) for d in fresh)),
            "energy_24h": Figure(round(window["energy_24h"], 3)),
            "energy_saved_24h": Figure(round(window["energy_saved_24h"], 3)),
            "dimming_saving_share_24h": Figure(
                round(100 * window["energy_saved_24h"] / full, 2) if full > 0 else None
            ),
        }

    def alerts(self, snap: Snapshot, settings: ApiSettings) -> list[AlertDraft]:
        return [
            AlertDraft("lamp_failure", "warning", d, d.fields.get("status"))
            for d in snap.fresh
            if failed(d)
        ]
