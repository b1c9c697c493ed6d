"""EV charging: faulted station alerts, and stations with a free or faulted connector per zone.
The KPIs are declared with the device type (``Evcharger.kpis``)."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import Engine

from api.kpis.base import AlertDraft, Check, DeviceKpis, DeviceState, Snapshot
from api.opendata.datasets import DAY, ZONE, Column, Dataset, Days, day_of, read_days, rounded
from api.schemas.readings import ConnectorPublic
from api.settings import ApiSettings
from smartcity.devices.evcharger import Evcharger
from smartcity.influx import InfluxReader, ident
from smartcity.storage import rollup_field


def connectors(d: DeviceState, status: str) -> int:
    """Connectors in ``status`` ("Available", "Charging", "Faulted") at the latest reading."""
    return int(d.fields.get(f"connectors{status}") or 0)


def faulted(d: DeviceState, _s: ApiSettings | None = None) -> bool:
    return connectors(d, "Faulted") > 0


_C = rollup_field  # the rollups' field names, short: _C("energy", "sum") is "energy_sum"
#: Charging sessions by day and zone, from raw events and from hourly rollups.
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


async def _evcharger_usage(db: InfluxReader, _e: Engine, days: Days) -> list[dict[str, Any]]:
    rows = await read_days(
        db, SESSIONS, days, {"m": ident(Evcharger.event_measurement()), "kind": "sessionStop"}
    )
    out = [
        {
            "day": day_of(r),
            "zone": r.tags["zone"],
            "sessions": int(r.values["sessions"]),
            "energy_kwh": rounded(r.values["energy"]),
            "mean_duration_min": rounded(float(r.values["seconds"]) / 60, 1),
        }
        for r in rows
    ]
    return sorted(out, key=lambda x: (x["day"], x["zone"]))


#: Its open dataset (``/v1/opendata/evcharger-usage-daily``).
USAGE_DAILY = Dataset(
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
)


class EvchargerKpis(DeviceKpis):
    device = Evcharger
    datasets = (USAGE_DAILY,)
    alert_messages: ClassVar[dict[str, tuple[str, str]]] = {
        "charger_faulted": (
            "Colonnina di ricarica guasta: {value} connettori",
            "Charging station faulted: {value} connectors",
        ),
    }
    zone_counts: ClassVar[dict[str, Check]] = {
        "stations_with_available": lambda d, _s: connectors(d, "Available") > 0,
        "stations_faulted": faulted,
    }

    parts = (Evcharger.connector_measurement(), "connector_id")

    def latest_extras(self, parts: list[DeviceState]) -> dict[str, Any]:
        """Each connector's latest state, in connector order."""
        return {
            "connectors": [
                ConnectorPublic(
                    connector_id=c.fields["connector_id"],
                    time=c.time,
                    status=c.fields.get("status"),
                    power=c.fields.get("power"),
                    energy=c.fields.get("energy"),
                )
                for c in sorted(parts, key=lambda c: int(c.fields["connector_id"]))
            ]
        }

    def alerts(self, snap: Snapshot, settings: ApiSettings) -> list[AlertDraft]:
        return [
            AlertDraft("charger_faulted", "warning", d, connectors(d, "Faulted"))
            for d in snap.fresh
            if faulted(d)
        ]
