"""Street light (FIWARE ``Streetlight``): lamp state, dimming and the energy it draws.

Serves plan line 1.d (public lighting renewal, energy saving): power and energy give the
consumption, ``illuminanceLevel`` the dimming, and ``status`` the failures maintenance acts on.
Commands switch a lamp, dim it, or give it a dimming schedule (night-time energy saving).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, Field, model_validator

from smartcity.devices.base import STRICT, Command, DeviceType, Event, Reading, measure
from smartcity.kpis import Hours, Increase, Kpi, Latest, Names, Ratio, Total, Where

PowerState = Literal["on", "off", "low"]
LampStatus = Literal["ok", "defectiveLamp", "columnIssue", "brokenLantern"]


class StreetlightReading(Reading):
    powerState: PowerState = Field(description="on, off, or low (dimmed by schedule).")
    illuminanceLevel: float = measure("1", 0.0, 1.0, "Dimming level, 0 = dark, 1 = full output.")
    activePower: float = measure("W", 0.0, 5_000.0, "Power drawn by the lamp.")
    totalActiveEnergyImport: float = measure(
        "kWh", 0.0, 1e9, "Lifetime energy drawn (meter).", counter=True
    )
    voltage: float = measure("V", 0.0, 500.0, "Supply voltage at the lamp.")
    current: float = measure("A", 0.0, 50.0, "Current drawn by the lamp.")
    ratedPower: float = measure("W", 0.0, 5_000.0, "Nameplate power at full output.")
    status: LampStatus = Field(description="Lamp condition (FIWARE Streetlight status).")


class LampStatusChanged(Event):
    """The lamp's condition changed: a failure to repair, or a repair done."""

    kind: Literal["statusChanged"]
    status: LampStatus
    TAGS: ClassVar[dict[str, str]] = {"kind": "kind", "status": "status"}


class SwitchCommand(Command):
    """Force the lamp on or off, or hand it back to its photocell and schedule (``auto``)."""

    action: Literal["switch"]
    state: Literal["on", "off", "auto"] = Field(description="auto = photocell and schedule.")


class DimCommand(Command):
    """Light at this level whenever the lamp is lit, replacing the dimming schedule."""

    action: Literal["dim"]
    level: float = measure("1", 0.0, 1.0, "Output level, 0 = dark, 1 = full output.")


class DimmingStep(BaseModel):
    model_config = STRICT

    start: float = measure("h", 0.0, 24.0, "Local hour the step begins (23.5 = 23:30).")
    end: float = measure("h", 0.0, 24.0, "Local hour it ends; below start = past midnight.")
    level: float = measure("1", 0.0, 1.0, "Output level during the step.")

    @model_validator(mode="after")
    def _not_empty(self) -> DimmingStep:
        if self.start == self.end:
            raise ValueError("a dimming step must not start and end at the same hour")
        return self


class ScheduleCommand(Command):
    """Replace the dimming schedule; outside every step a lit lamp is at full output."""

    action: Literal["schedule"]
    steps: list[DimmingStep] = Field(max_length=24)


class Streetlight(DeviceType):
    name = "streetlight"
    fiware_type = "Streetlight"
    title_it = "Illuminazione pubblica"
    title_en = "Public lighting"
    reading_model = StreetlightReading
    event_model = Annotated[LampStatusChanged, Field(discriminator="kind")]
    command_model = Annotated[
        SwitchCommand | DimCommand | ScheduleCommand, Field(discriminator="action")
    ]
    report_interval_s = 60.0


_R = Names(StreetlightReading)
#: A reading stands for one reporting interval at its power: W per reading -> kWh.
KWH_PER_WATT_READING = Streetlight.report_interval_s / 3.6e6
#: The lamp draws power. A lamp told to be on but dead draws none, and gives no light.
DRAWING = Where(_R.activePower, ">", 0)
#: Dimmed (by schedule or command) and drawing power: where dimming saves energy.
DIMMED = (Where(_R.powerState, "=", "low"), DRAWING)
#: Energy saved by dimming: rated minus drawn power of dimmed lamps drawing power, per reading.
SAVED = Total(
    Streetlight.measurement(), _R.ratedPower, DIMMED, minus=_R.activePower,
    scale=KWH_PER_WATT_READING,
)  # fmt: skip
#: What the lamps drawing power would have drawn at their rated (full) power.
AT_FULL_POWER = Total(
    Streetlight.measurement(), _R.ratedPower, (DRAWING,), scale=KWH_PER_WATT_READING
)
DAY = Hours(24)

Streetlight.kpis = (
    Kpi(
        "lamps_reporting", "Lampioni che trasmettono",
        "Street lights with a reading in the last minutes.", "count",
        Latest(Streetlight.measurement(), _R.status),
    ),
    Kpi(
        "lamps_on", "Lampioni accesi",
        "Street lights drawing power by their latest reading (full or dimmed); a failed lamp "
        "told to be on draws none and is not on.", "count",
        Latest(Streetlight.measurement(), _R.activePower, where=DRAWING), headline=True,
    ),
    Kpi(
        "lamps_failed", "Lampioni guasti",
        "Street lights whose latest reading reports a fault (lamp, column or lantern).", "count",
        Latest(Streetlight.measurement(), _R.status, where=Where(_R.status, "!=", "ok")),
        alarm=1, headline=True,
    ),
    Kpi(
        "energy_24h", "Energia consumata (24 h)",
        "Energy drawn in the last 24 hours, from each lamp's meter.", "kWh",
        Increase(Streetlight.measurement(), _R.totalActiveEnergyImport), DAY, decimals=3,
    ),
    Kpi(
        "energy_saved_24h", "Energia risparmiata (24 h)",
        "Energy saved by dimming in the last 24 hours: for every reading of a dimmed lamp "
        "drawing power, rated minus drawn power over the reporting interval.", "kWh",
        SAVED, DAY, decimals=3,
    ),
    Kpi(
        "dimming_saving_share_24h", "Risparmio sul pieno regime (24 h)",
        "Energy saved by dimming as a share of what the lamps drawing power would have drawn "
        "at full rated power, in the last 24 hours.", "%",
        Ratio(SAVED, AT_FULL_POWER), DAY, decimals=2,
    ),
)  # fmt: skip
