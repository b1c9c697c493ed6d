"""Waste bin (FIWARE ``WasteContainer``): how full it is, and whether it burns or is tampered with.

Serves plan line 1.b (circular economy): fill levels per stream drive collection rounds, and the
separate-collection share is measured against the city's 80 % target. A command sets how often
a bin reports (more often as it nears full, less to save its battery).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from smartcity.devices.base import Command, DeviceType, Event, Reading, measure

#: Cremona's separate-collection streams (carta, vetro e lattine, plastica, organico, verde,
#: indifferenziato).
WasteKind = Literal["paper", "glassAndCans", "plastic", "organic", "green", "residual"]
BinStatus = Literal["ok", "lidOpen", "dropped", "moved", "vandalized", "burning"]


class WastebinReading(Reading):
    fillingLevel: float = measure("1", 0.0, 1.0, "How full the bin is, 0 = empty, 1 = full.")
    temperature: float = measure("Cel", -40.0, 400.0, "Inside temperature; high means fire.")
    storedWasteKind: WasteKind = Field(description="The waste stream the bin collects.")
    status: BinStatus = Field(description="Bin condition (FIWARE WasteContainer status).")
    batteryLevel: float = measure("1", 0.0, 1.0, "Sensor battery, 0 = empty, 1 = full.")


class BinEmptied(Event):
    """A collection round emptied the bin; ``collectedLevel`` is how full it was."""

    kind: Literal["emptied"]
    collectedLevel: float = measure("1", 0.0, 1.0, "Fill level just before emptying.")
    storedWasteKind: WasteKind
    TAGS: ClassVar[dict[str, str]] = {"kind": "kind", "storedWasteKind": "waste_kind"}


class BinAlarm(Event):
    """The bin's condition turned to an alarm (``burning``, ``vandalized``...) or back to ok."""

    kind: Literal["alarm"]
    status: BinStatus
    TAGS: ClassVar[dict[str, str]] = {"kind": "kind", "status": "status"}


class IntervalCommand(Command):
    """Change how often the bin reports."""

    action: Literal["setInterval"]
    interval: float = measure("s", 10.0, 86_400.0, "Seconds between readings.")


class Wastebin(DeviceType):
    name = "wastebin"
    fiware_type = "WasteContainer"
    title_it = "Raccolta rifiuti"
    title_en = "Waste collection"
    reading_model = WastebinReading
    event_model = Annotated[BinEmptied | BinAlarm, Field(discriminator="kind")]
    command_model = Annotated[IntervalCommand, Field(discriminator="action")]
    report_interval_s = 300.0
