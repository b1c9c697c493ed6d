"""Public lighting: lamp failure alerts, and lamps on and failed per zone. The KPIs are
declared with the device type (``Streetlight.kpis``)."""

from __future__ import annotations

from typing import ClassVar

from api.kpis.base import AlertDraft, Check, DeviceKpis, Snapshot, meets
from api.settings import ApiSettings
from smartcity.devices.streetlight import Streetlight
from smartcity.kpis import find

#: Drawing power by its latest reading (the ``lamps_on`` KPI's definition).
lit = meets(find(Streetlight.kpis, "lamps_on"))
#: A fault by its latest reading (the ``lamps_failed`` KPI's definition).
failed = meets(find(Streetlight.kpis, "lamps_failed"))


class StreetlightKpis(DeviceKpis):
    device = Streetlight
    zone_counts: ClassVar[dict[str, Check]] = {"lamps_on": lit, "lamps_failed": failed}

    def alerts(self, snap: Snapshot, settings: ApiSettings) -> list[AlertDraft]:
        return [
            AlertDraft("lamp_failure", "warning", d, d.fields.get("status"))
            for d in snap.fresh
            if failed(d, settings)
        ]
