"""EV charging KPIs: connectors available, charging and faulted; energy and sessions."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from api.kpis.base import (
    AlertDraft,
    Check,
    DeviceKpis,
    DeviceState,
    Figure,
    Period,
    Snapshot,
    count_events,
    sum_of_spreads,
)
from api.schemas.readings import ConnectorPublic
from api.settings import ApiSettings
from smartcity.devices.evcharger import Evcharger
from smartcity.influx import InfluxReader


def connectors(d: DeviceState, status: str) -> int:
    """Connectors in ``status`` ("Available", "Charging", "Faulted") at the latest reading."""
    return int(d.fields.get(f"connectors{status}") or 0)


def faulted(d: DeviceState, _s: ApiSettings | None = None) -> bool:
    return connectors(d, "Faulted") > 0


class EvchargerKpis(DeviceKpis):
    device = Evcharger
    kpi_ids = (
        "stations_reporting",
        "connectors_available",
        "connectors_charging",
        "connectors_faulted",
        "energy_delivered_24h",
        "sessions_24h",
    )
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

    async def window(
        self, db: InfluxReader, end: datetime, settings: ApiSettings
    ) -> dict[str, float]:
        period = Period.last(end, 24)
        sessions = await count_events(db, Evcharger.event_measurement(), "sessionStop", period)
        return {
            "energy_delivered_24h": await sum_of_spreads(
                db, Evcharger.measurement(), "energy", period
            ),
            "sessions_24h": sessions,
        }

    def kpis(
        self, snap: Snapshot, window: dict[str, float], settings: ApiSettings
    ) -> dict[str, Figure]:
        fresh = snap.fresh
        return {
            "stations_reporting": Figure(len(fresh)),
            **{
                f"connectors_{s.lower()}": Figure(sum(connectors(d, s) for d in fresh))
                for s in ("Available", "Charging", "Faulted")
            },
            "energy_delivered_24h": Figure(round(window["energy_delivered_24h"], 3)),
            "sessions_24h": Figure(window["sessions_24h"]),
        }

    def alerts(self, snap: Snapshot, settings: ApiSettings) -> list[AlertDraft]:
        return [
            AlertDraft("charger_faulted", "warning", d, connectors(d, "Faulted"))
            for d in snap.fresh
            if faulted(d)
        ]
