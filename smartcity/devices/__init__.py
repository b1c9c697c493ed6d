"""The device types the platform knows, by topic name. Adding a type is one line here."""

from smartcity.devices.airquality import Airquality
from smartcity.devices.base import DeviceType, Event, Reading, Row
from smartcity.devices.evcharger import Evcharger
from smartcity.devices.streetlight import Streetlight
from smartcity.devices.wastebin import Wastebin

DEVICE_TYPES: dict[str, type[DeviceType]] = {
    t.name: t for t in (Streetlight, Wastebin, Evcharger, Airquality)
}

__all__ = ["DEVICE_TYPES", "DeviceType", "Event", "Reading", "Row"]
