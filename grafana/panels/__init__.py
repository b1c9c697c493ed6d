"""What each device type shows in Grafana. Adding a type is one module and one line here."""

from grafana.panels import airquality, evcharger, streetlight, wastebin
from grafana.panels.base import AlertRule, ServicePanels

PANELS: dict[str, ServicePanels] = {
    p.device.name: p
    for p in (streetlight.PANELS, wastebin.PANELS, evcharger.PANELS, airquality.PANELS)
}

__all__ = ["PANELS", "AlertRule", "ServicePanels"]
