"""Air-quality station (FIWARE ``AirQualityObserved``): the pollutants EU law sets limits for.

Serves plan line 5.c (the smart city's environment applications) and the environment lines 1.c
(less pollution from traffic) and 1.e: PM10, PM2.5, NO2 and O3 in µg/m³ and CO in mg/m³, as the
FIWARE model and Directive 2008/50/EC give them, with the temperature and humidity that explain
them (a cold, damp, still winter week piles particulate up in the Po Valley). Each reading is
the mean over the station's reporting interval. A command sets how often a station reports.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from smartcity.devices.base import Command, DeviceType, Event, Reading, Row, measure
from smartcity.kpis import Band, DeviceMean, Exceedances, Kpi, Latest, Names, Target, ThisYear

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

    @classmethod
    def reading_rows(cls, reading: Reading) -> Iterator[Row]:
        """The station's point, with its index band (``EAQI_FIELD``) beside the readings."""
        assert isinstance(reading, AirqualityReading)
        (point,) = super().reading_rows(reading)
        band = f",{EAQI_FIELD}={eaqi_band(reading)}i"
        yield Row(point.measurement, point.fields + band, point.time_ns)


#: EU limit values for the protection of human health, in force now: Directive 2008/50/EC,
#: Art. 13 and Annex XI (PM10, NO2), Art. 16 and Annex XIV (PM2.5), Art. 19 and Annex XII (the
#: ozone information threshold). The API's KPIs and alerts and the Grafana boards use these.
PM10_DAILY_LIMIT = 50.0
PM10_DAYS_ALLOWED = 35
NO2_HOURLY_LIMIT = 200.0
NO2_HOURS_ALLOWED = 18
PM25_ANNUAL_LIMIT = 25.0
O3_INFORMATION_THRESHOLD = 180.0
#: The same limits from 1 January 2030: Directive (EU) 2024/2881, Art. 13 and Annex I.
PM10_DAILY_LIMIT_2030 = 45.0
PM10_DAYS_ALLOWED_2030 = 18
NO2_HOURS_ALLOWED_2030 = 3
PM25_ANNUAL_LIMIT_2030 = 10.0

#: The European Environment Agency's European Air Quality Index bands, best first; a reading's
#: band is stored with it as ``eaqiBand``, 1 (good) to 6 (extremely poor).
EAQI_BANDS = ("good", "fair", "moderate", "poor", "veryPoor", "extremelyPoor")
EAQI_FIELD = "eaqiBand"
#: Where each band after the first begins, per pollutant, in µg/m³ (the EEA's bands as revised
#: in 2024). The EEA applies them to hourly means (PM over 24 hours where it has them); here
#: they apply to each reading's own means, so the API and the boards read one stored band.
EAQI_BREAKS: dict[str, tuple[float, ...]] = {
    "pm25": (5.0, 15.0, 50.0, 90.0, 140.0),
    "pm10": (15.0, 45.0, 120.0, 195.0, 270.0),
    "no2": (10.0, 25.0, 60.0, 100.0, 150.0),
    "o3": (60.0, 100.0, 120.0, 160.0, 180.0),
}


def eaqi_band(reading: AirqualityReading) -> int:
    """The reading's index band, 1 (good) to 6 (extremely poor): its worst pollutant's."""
    values: dict[str, float] = reading.model_dump(include=set(EAQI_BREAKS))
    return 1 + max(sum(values[p] > edge for edge in edges) for p, edges in EAQI_BREAKS.items())


#: The index bands' Italian names, best first (boards and the API's breakdown use them).
EAQI_BANDS_IT = ("Buona", "Discreta", "Moderata", "Scadente", "Molto scadente", "Pessima")

_R = Names(AirqualityReading, extra=(EAQI_FIELD,))
_M = Airquality.measurement()
_IN_FORCE = "Directive 2008/50/EC"

# Each KPI is the worst station's: the law counts exceedances per sampling point. The limits
# of Directive (EU) 2024/2881 (Art. 13, Annex I), from 1 January 2030, are in the catalogue's
# words; the targets here are the limits in force.
Airquality.kpis = (
    Kpi(
        "stations_reporting", "Centraline che trasmettono",
        "Air-quality stations with a reading in the last minutes.", "count",
        Latest(_M, _R.status),
    ),
    Kpi(
        "pm10_days_over_limit", "Giorni PM10 oltre 50 µg/m³",
        f"The most days this year (Rome days) with a PM10 daily mean over "
        f"{PM10_DAILY_LIMIT:g} µg/m³ at one station; {PM10_DAYS_ALLOWED} a year are allowed.",
        "days", Exceedances(_M, _R.pm10, "1d", PM10_DAILY_LIMIT), ThisYear(),
        target=Target("<=", PM10_DAYS_ALLOWED, f"{_IN_FORCE}, Art. 13(1) and Annex XI"),
        alarm=PM10_DAYS_ALLOWED + 1, headline=True,
    ),
    Kpi(
        "no2_hours_over_limit", "Ore NO2 oltre 200 µg/m³",
        f"The most hours this year with an NO2 hourly mean over {NO2_HOURLY_LIMIT:g} µg/m³ at "
        f"one station; {NO2_HOURS_ALLOWED} a year are allowed.",
        "hours", Exceedances(_M, _R.no2, "1h", NO2_HOURLY_LIMIT), ThisYear(),
        target=Target("<=", NO2_HOURS_ALLOWED, f"{_IN_FORCE}, Art. 13(1) and Annex XI"),
        alarm=NO2_HOURS_ALLOWED + 1,
    ),
    Kpi(
        "pm25_annual_mean", "PM2.5, media dell'anno",
        f"The highest mean PM2.5 of a station this year so far, against the "
        f"{PM25_ANNUAL_LIMIT:g} µg/m³ annual limit.",
        "µg/m³", DeviceMean(_M, _R.pm25), ThisYear(),
        target=Target("<=", PM25_ANNUAL_LIMIT, f"{_IN_FORCE}, Art. 16(2) and Annex XIV"),
        decimals=1, alarm=PM25_ANNUAL_LIMIT,
    ),
    Kpi(
        "eaqi_band", "Indice europeo della qualità dell'aria",
        "The worst European Air Quality Index band among the stations' latest readings "
        "(1 good ... 6 extremely poor; EEA bands, the worst pollutant's).",
        "band", Band(_M, _R.eaqiBand, edges=(2, 3, 4, 5, 6), labels=EAQI_BANDS_IT),
        alarm=4, headline=True,
    ),
)  # fmt: skip
