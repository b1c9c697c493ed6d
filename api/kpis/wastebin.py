"""Waste: full and burning bin alerts and zone figures. The KPIs are declared with the device
type (``Wastebin.kpis``); "full" is at or above the bin's threshold from the registry, else the
global ``--bin-threshold``."""

from __future__ import annotations

from typing import ClassVar

from api.kpis.base import AlertDraft, Check, DeviceKpis, DeviceState, Snapshot, meets
from api.settings import ApiSettings
from smartcity.devices.wastebin import Wastebin
from smartcity.kpis import find

#: At or above its threshold by its latest reading (the ``bins_full`` KPI's definition).
full = meets(find(Wastebin.kpis, "bins_full"))
#: Burning by its latest reading (the ``bins_burning`` KPI's definition).
burning = meets(find(Wastebin.kpis, "bins_burning"))


def stream(d: DeviceState) -> str:
    return str(d.fields.get("storedWasteKind", "unknown"))


class WastebinKpis(DeviceKpis):
    device = Wastebin
    zone_counts: ClassVar[dict[str, Check]] = {"bins_full": full, "bins_burning": burning}
    uses_threshold = True

    def alerts(self, snap: Snapshot, settings: ApiSettings) -> list[AlertDraft]:
        out = []
        for d in snap.fresh:
            if burning(d, settings):
                out.append(AlertDraft("bin_burning", "critical", d, d.fields.get("temperature")))
            if full(d, settings):
                out.append(
                    AlertDraft(
                        "bin_full", "warning", d, d.fields.get("fillingLevel"),
                        {"stream": stream(d)},
                    )
                )  # fmt: skip
        return out
