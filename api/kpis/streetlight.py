"""Public lighting: lamp failure alerts, and lamps on and failed per zone. The KPIs are
declared with the device type (``Streetlight.kpis``)."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import Engine

from api.kpis.base import AlertDraft, Check, DeviceKpis, Snapshot, meets
from api.opendata.datasets import DAY, ZONE, Column, Dataset, Days, day_of, read_days, rounded
from api.settings import ApiSettings
from smartcity.devices.streetlight import Streetlight
from smartcity.influx import InfluxReader, ident
from smartcity.kpis import find
from smartcity.storage import rollup_field

#: Drawing power by its latest reading (the ``lamps_on`` KPI's definition).
lit = meets(find(Streetlight.kpis, "lamps_on"))
#: A fault by its latest reading (the ``lamps_failed`` KPI's definition).
failed = meets(find(Streetlight.kpis, "lamps_failed"))

_C = rollup_field  # the rollups' field names, short: _C("energy", "sum") is "energy_sum"
#: The daily energy by zone, from raw readings and from hourly rollups (``read_days``).
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


async def _streetlight_energy(db: InfluxReader, _e: Engine, days: Days) -> list[dict[str, Any]]:
    energy = await read_days(db, ENERGY, days, {"m": ident(Streetlight.measurement())})
    failures = await read_days(
        db, FAILURES, days, {"m": ident(Streetlight.event_measurement()), "ok": "ok"}
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
    zone_counts: ClassVar[dict[str, Check]] = {"lamps_on": lit, "lamps_failed": failed}

    def alerts(self, snap: Snapshot, settings: ApiSettings) -> list[AlertDraft]:
        return [
            AlertDraft("lamp_failure", "warning", d, d.fields.get("status"))
            for d in snap.fresh
            if failed(d, settings)
        ]
