"""Air-quality station (FIWARE ``AirQualityObserved``): the pollutants EU law sets limits for.

Serves plan line 5.c (the smart city's environment applications) and the environment lines 1.c
(less pollution from traffic) and 1.e: PM10, PM2.5, NO2 and O3 in µg/m³ and CO in mg/m³, as the
FIWARE model and Directive 2008/50/EC give them, with the temperature and humidity that explain
them (a cold, damp, still winter week piles particulate up in the Po Valley). Each reading is
the mean over the station's reporting interval. A command sets how often a station reports.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from smartcity.devices.base import Command, DeviceType, Event, Reading, measure

#: ``ok``; ``calibrating`` (zero/span check: its values are not to be trusted for a while);
#: ``sensorFault`` (a sensor failed: someone must go and see).
StationStatus = Literal["ok", "calibrating", "sensorFault"]

#: The pollutants a station measures, as reading fields, in the order boards list them.
POLLUTANTS = ("pm10", "pm25", "no2", "o3", "co")

#: Unit codes as the readings declare them (UCUM), µg/m³ for all but CO.
MICROGRAMS = "ug/m3"
MILLIGRAMS = "mg/m3"


class AirqualityReading(Reading):
    pm10: float = measure(MICROGRAMS, 0.0, 2_000.0, "Particulate matter under 10 µm.")
    pm25: float = measure(MICROGRAMS, 0.0, 2_000.0, "Fine particulate matter under 2.5 µm.")
    no2: float = measure(MICROGRAMS, 0.0, 2_000.0, "Nitrogen dioxide.")
    o3: float = measure(MICROGRAMS, 0.0, 1_000.0, "Ozone.")
    co: float = measure(MILLIGRAMS, 0.0, 100.0, "Carbon monoxide.")
    temperature: float = measure("Cel", -40.0, 60.0, "Air temperature at the station.")
    relativeHumidity: float = measure("1", 0.0, 1.0, "Relative humidity, 0 to 1.")
    status: StationStatus = Field(description="Station condition: ok, calibrating, sensorFault.")


class StationStatusChanged(Event):
    """The station's condition changed: a sensor failed, a calibration began or ended."""

    kind: Literal["statusChanged"]
    status: StationStatus
    TAGS: ClassVar[dict[str, str]] = {"kind": "kind", "status": "status"}


class ReportIntervalCommand(Command):
    """Change how often the station reports (more often during a pollution episode)."""

    action: Literal["setInterval"]
    interval: float = measure("s", 10.0, 86_400.0, "Seconds between readings.")


class Airquality(DeviceType):
    name = "airquality"
    fiware_type = "AirQualityObserved"
    title_it = "Qualità dell'aria"
    title_en = "Air quality"
    reading_model = AirqualityReading
    event_model = Annotated[StationStatusChanged, Field(discriminator="kind")]
    command_model = Annotated[ReportIntervalCommand, Field(discriminator="action")]
    report_interval_s = 60.0
