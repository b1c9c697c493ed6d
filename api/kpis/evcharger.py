"""EV charging: faulted station alerts, and stations with a free or faulted connector per zone.
The KPIs are declared with the device type (``Evcharger.kpis``)."""

from __future__ import annotations

from typing import ClassVar

from api.kpis.base import AlertDraft, Check, DeviceKpis, DeviceState, Snapshot
from api.settings import ApiSettings
from smartcity.devices.evcharger import Evcharger


def connectors(d: DeviceState, status: str) -> int:
    """Connectors in ``status`` ("Available", "Charging", "Faulted") at the latest reading."""
    return int(d.fields.get(f"connectors{status}") or 0)


def faulted(d: DeviceState, _s: ApiSettings | None = None) -> bool:
    return connectors(d, "Faulted") > 0


class EvchargerKpis(DeviceKpis):
    device = Evcharger
    zone_counts: ClassVar[dict[str, Check]] = {
        "stations_with_available": lambda d, _s: connectors(d, "Available") > 0,
        "stations_faulted": faulted,
    }

    def alerts(self, snap: Snapshot, settings: ApiSettings) -> list[AlertDraft]:
        return [
            AlertDraft("charger_faulted", "warning", d, connectors(d, "Faulted"))
            for d in snap.fresh
            if faulted(d)
        ]
