"""Live figures: the KPIs each device type declares (``smartcity.kpis``), computed in
``base.py``, and one module per type for its alerts and zone figures, registered here
(``tests/test_registry.py`` checks that every device type has one)."""

from api.kpis.base import AlertDraft, DeviceKpis, DeviceState, Figure, Snapshot
from api.kpis.evcharger import EvchargerKpis
from api.kpis.streetlight import StreetlightKpis
from api.kpis.wastebin import WastebinKpis

KPI_MODULES: dict[str, DeviceKpis] = {
    k.device.name: k for k in (StreetlightKpis(), WastebinKpis(), EvchargerKpis())
}

__all__ = ["KPI_MODULES", "AlertDraft", "DeviceKpis", "DeviceState", "Figure", "Snapshot"]
