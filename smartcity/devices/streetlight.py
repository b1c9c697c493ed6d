"""Street light (FIWARE ``Streetlight``): lamp state, dimming and the energy it draws.

Serves plan line 1.d (public lighting renewal, energy saving): power and energy give the
consumption, ``illuminanceLevel`` the dimming, and ``status`` the failures maintenance acts on.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from smartcity.devices.base import DeviceType, Event, Reading, measure

PowerState = Literal["on", "off", "low"]
LampStatus = Literal["ok", "defectiveLamp", "columnIssue", "brokenLantern"]


class StreetlightReading(Reading):
    powerState: PowerState = Field(description="on, off, or low (dimmed by schedule).")
    illuminanceLevel: float = measure("1", 0.0, 1.0, "Dimming level, 0 = dark, 1 = full output.")
    activePower: float = measure("W", 0.0, 5_000.0, "Power drawn by the lamp.")
    totalActiveEnergyImport: float = measure("kWh", 0.0, 1e9, "Lifetime energy drawn (meter).")
    voltage: float = measure("V", 0.0, 500.0, "Supply voltage at the lamp.")
    current: float = measure("A", 0.0, 50.0, "Current drawn by the lamp.")
    ratedPower: float = measure("W", 0.0, 5_000.0, "Nameplate power at full output.")
    status: LampStatus = Field(description="Lamp condition (FIWARE Streetlight status).")


class LampStatusChanged(Event):
    """The lamp's condition changed: a failure to repair, or a repair done."""

    kind: Literal["statusChanged"]
    status: LampStatus
    TAGS: ClassVar[dict[str, str]] = {"kind": "kind", "status": "status"}


class Streetlight(DeviceType):
    name = "streetlight"
    fiware_type = "Streetlight"
    title_it = "Illuminazione pubblica"
    title_en = "Public lighting"
    reading_model = StreetlightReading
    event_model = Annotated[LampStatusChanged, Field(discriminator="kind")]
    report_interval_s = 60.0
