"""Air-quality stations in the Po Valley: traffic, winter inversions, summer ozone, rain.

The weather is regional, so it is one function of the day shared by every station (and by an
edge agent's simulated station): still, cold winter days pile particulate up for days on end
until rain or wind clears it, summer afternoons cook ozone out of the morning's traffic fumes.
Each station adds its own place: a traffic station sees the rush hours in NO2 and CO and
less ozone (NO titrates it), a background station less of both. Stations now and then calibrate
(a few minutes) or lose a sensor (until someone repairs it).
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass
from datetime import date, datetime

from simulators.base import LOCAL_TZ, Placement, SimulatedDevice, local_hour, sun_elevation, to_ms
from smartcity.commands import CommandRejected
from smartcity.devices import Event, Reading
from smartcity.devices.airquality import (
    Airquality,
    AirqualityReading,
    ReportIntervalCommand,
    StationStatus,
    StationStatusChanged,
)
from smartcity.devices.base import Command

#: Share of stations beside busy roads (the rest measure the urban background).
TRAFFIC_SHARE = 0.4
#: How much of a day's stagnation is left the next day: inversions last for days.
PERSISTENCE = 0.88
#: Days of weather run before any day asked for, so a day's state does not depend on when the
#: simulation started.
SPIN_UP_DAYS = 30
RAIN_CHANCE = 0.22
#: A sensor fails about once in three months; a technician comes within a day or so.
FAULTS_PER_HOUR = 1 / (90 * 24)
REPAIRS_PER_HOUR = 1 / 20
#: An automatic zero/span check about once a week, lasting a quarter of an hour.
CALIBRATIONS_PER_HOUR = 1 / (7 * 24)
CALIBRATION_S = 900.0


@dataclass(frozen=True, slots=True)
class Weather:
    """One day's regional weather."""

    #: 1 in mid-January, 0 at the equinoxes, -1 in mid-July.
    winter: float
    #: Accumulated stagnation: 0 after a windy, rainy spell, 2 or more in a winter inversion.
    stagnation: float
    #: Local hour the rain starts (it then lasts the rest of the day), or None on a dry day.
    rain_from: float | None
    #: A hot, sunny summer day (ozone peaks over the information threshold).
    heat: float


def _daily_draws(day: int) -> tuple[float, float, float, float]:
    rng = random.Random(f"cremona-weather:{day}")
    return rng.random(), rng.uniform(0.0, 22.0), rng.uniform(0.1, 0.6), rng.random()


def _winter(day: int) -> float:
    doy = date.fromordinal(day).timetuple().tm_yday
    return math.cos(2 * math.pi * (doy - 15) / 365.25)


@functools.lru_cache(maxsize=4096)
def weather(day: int) -> Weather:
    """The weather of a day (its ordinal): the same for every station and every run."""
    stagnation = 0.0
    for d in range(day - SPIN_UP_DAYS, day + 1):
        rain, rain_from, still, hot = _daily_draws(d)
        winter = _winter(d)
        wet = rain < RAIN_CHANCE
        # still, cold days add to the pile; a rainy day yesterday washed most of it out
        stagnation = stagnation * PERSISTENCE + max(0.0, winter + 0.2) * still
        if d == day:
            return Weather(winter, stagnation, rain_from if wet else None, max(0.0, -winter) * hot)
        if wet:
            stagnation *= 0.25
    raise AssertionError("unreachable")


def bump(hour: float, peak: float, width: float) -> float:
    """A bell-shaped rush hour around ``peak``."""
    return math.exp(-(((hour - peak) / width) ** 2))


class SimulatedAirquality(SimulatedDevice):
    device_type = Airquality
    id_prefix = "aq"
    fleet_size = 10

    def __init__(self, placement: Placement, rng: random.Random, fault_rate: float = 1.0) -> None:
        super().__init__(placement, rng, fault_rate)
        self.traffic = rng.random() < TRAFFIC_SHARE
        #: How this station's sensors and street read against the regional figure.
        self.bias = rng.uniform(0.85, 1.2)
        self.status: StationStatus = "ok"
        self.calibration_left = 0.0

    def step(self, now: datetime, dt: float) -> tuple[Reading, list[Event]]:
        events = self._condition(now, dt)
        local = now.astimezone(LOCAL_TZ)
        w = weather(local.date().toordinal())
        hour = local_hour(now)
        winter = max(0.0, w.winter)
        wet = w.rain_from is not None and hour >= w.rain_from
        # night: a shallow mixing layer holds what the day emitted
        night = 1.0 + 0.25 * math.cos(2 * math.pi * (hour - 22) / 24)
        rush = 0.3 + bump(hour, 8.0, 1.5) + 0.9 * bump(hour, 18.5, 2.0)
        if local.weekday() >= 5:
            rush *= 0.6
        road = (1.0 if self.traffic else 0.35) * rush
        still = 0.45 + 0.55 * w.stagnation
        washout = 0.45 if wet else 1.0

        pm10 = ((16 + 24 * winter) * still * night + 10 * road) * washout
        pm25 = pm10 * (0.55 + 0.15 * winter)
        no2 = (12 + 45 * road) * (1 + 0.6 * w.stagnation) * (1 + 0.3 * winter)
        no2 *= 0.7 if wet else 1.0
        sun = max(0.0, math.sin(math.radians(sun_elevation(now))))
        o3 = (20 + (40 + 120 * w.heat) * sun * (0.6 - 0.4 * w.winter)) * (0.6 if wet else 1.0)
        o3 = max(2.0, o3 - 0.25 * no2)  # fresh NO eats ozone beside the road
        co = (0.25 + 0.9 * road) * (1 + 0.5 * w.stagnation) * (1 + 0.4 * winter)
        temp = 13 - 11 * w.winter + 5 * math.sin(2 * math.pi * (hour - 9) / 24)
        temp -= 2.0 if wet else 0.0
        humidity = 0.68 + 0.14 * w.winter - 0.15 * math.sin(2 * math.pi * (hour - 9) / 24)
        humidity += 0.15 if wet else 0.0

        def noisy(value: float, digits: int = 1) -> float:
            return round(max(0.0, value * self.bias * self.rng.gauss(1.0, 0.05)), digits)

        reading = AirqualityReading(
            ts=to_ms(now),
            seq=self.seq,
            pm10=noisy(pm10),
            pm25=noisy(pm25),
            no2=noisy(no2),
            o3=noisy(o3),
            co=noisy(co, 2),
            temperature=round(temp + self.rng.gauss(0, 0.3), 1),
            relativeHumidity=round(min(1.0, max(0.1, humidity + self.rng.gauss(0, 0.02))), 3),
            status=self.status,
        )
        return reading, events

    def _condition(self, now: datetime, dt: float) -> list[Event]:
        before = self.status
        if self.status == "calibrating":
            self.calibration_left -= dt
            if self.calibration_left <= 0:
                self.status = "ok"
        elif self.status == "sensorFault":
            if self.chance(REPAIRS_PER_HOUR, dt):
                self.status = "ok"
        elif self.chance(FAULTS_PER_HOUR * self.fault_rate, dt):
            self.status = "sensorFault"
        elif self.chance(CALIBRATIONS_PER_HOUR, dt):
            self.status, self.calibration_left = "calibrating", CALIBRATION_S
        if self.status == before:
            return []
        return [StationStatusChanged(ts=to_ms(now), kind="statusChanged", status=self.status)]

    def apply(self, command: Command) -> None:
        if not isinstance(command, ReportIntervalCommand):
            raise CommandRejected(f"an air-quality station cannot {type(command).__name__}")
        self.interval = command.interval
