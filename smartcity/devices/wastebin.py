"""Waste bin (FIWARE ``WasteContainer``): how full it is, and whether it burns or is tampered with.

Serves plan line 1.b (circular economy): fill levels per stream drive collection rounds, and the
separate-collection share is measured against the city's 80 % target. A command sets how often
a bin reports (more often as it nears full, less to save its battery).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from smartcity.devices.base import EVENT_COUNT_FIELD, Command, DeviceType, Event, Reading, measure
from smartcity.kpis import ZONE, Hours, Kpi, Latest, Names, Ratio, Target, Total, Where

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


_R = Names(WastebinReading)
_E = Names(BinEmptied, extra=(EVENT_COUNT_FIELD,))
#: A bin at or above this fill level is full: due for collection (the API's
#: ``--bin-threshold`` defaults to it; the registry may set a bin's own).
FULL_LEVEL = 0.8
#: The stream that is not separately collected.
RESIDUAL: WasteKind = "residual"
EMPTIED = Where(_E.kind, "=", "emptied")


def _collected(*where: Where) -> Total:
    """Volume emptied, in bins' worth (fill level just before emptying); bins are taken to be
    of equal volume: the contract does not carry a bin's capacity yet."""
    return Total(Wastebin.event_measurement(), _E.collectedLevel, (EMPTIED, *where))


Wastebin.kpis = (
    Kpi(
        "bins_reporting", "Cassonetti che trasmettono",
        "Bins with a reading in the last minutes.", "count",
        Latest(Wastebin.measurement(), _R.status),
    ),
    Kpi(
        "bins_full", "Cassonetti da svuotare",
        f"Bins at or above {FULL_LEVEL:.0%} full by their latest reading (the API applies a "
        "bin's own threshold from the registry).", "count",
        Latest(
            Wastebin.measurement(), _R.fillingLevel,
            where=Where(_R.fillingLevel, ">=", FULL_LEVEL, per_device=True),
            breakdown=(_R.storedWasteKind, ZONE),
        ),
        alarm=10, headline=True,
    ),
    Kpi(
        "bins_burning", "Cassonetti in fiamme",
        "Bins whose latest reading says they are burning: call the fire brigade.", "count",
        Latest(Wastebin.measurement(), _R.status, where=Where(_R.status, "=", "burning")),
        alarm=1,
    ),
    Kpi(
        "collections_24h", "Svuotamenti (24 h)", "Bins emptied in the last 24 hours.", "count",
        Total(Wastebin.event_measurement(), EVENT_COUNT_FIELD, (EMPTIED,)), Hours(24),
    ),
    Kpi(
        "separate_collection_share", "Raccolta differenziata (30 giorni)",
        "Share of the waste emptied from the monitored bins in the last 30 days that was "
        "sorted (not residual), against the 80% target of the mandate plan.", "%",
        Ratio(_collected(Where(_E.waste_kind, "!=", RESIDUAL)), _collected()), Hours(30 * 24),
        target=Target(">=", 80, "1.b Piano economia circolare"), decimals=2, headline=True,
    ),
)  # fmt: skip
