"""A simulated device: deterministic behaviour over time, one module per device type.

The same classes drive ``smartcity simulate`` (a whole fleet) and the edge agent's ``simulated``
driver (one device), so a demo agent behaves exactly like the fleet.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar
from zoneinfo import ZoneInfo

from smartcity.city import CENTRE, TIMEZONE, ZONES, Zone
from smartcity.devices import DeviceType, Event, Reading
from smartcity.devices.base import Command

LOCAL_TZ = ZoneInfo(TIMEZONE)


@dataclass(frozen=True, slots=True)
class Placement:
    device_id: str
    zone: str
    lat: float
    lon: float


class SimulatedDevice(ABC):
    """Produces this device's next reading (and any events) at a given moment."""

    device_type: ClassVar[type[DeviceType]]
    #: Prefix of simulated device ids, e.g. ``sl`` -> ``sl-00001``.
    id_prefix: ClassVar[str]
    #: How many of this type the default fleet has (``smartcity simulate``, ``smartcity up``,
    #: docker compose); ``--fleet TYPE=N`` changes it.
    fleet_size: ClassVar[int]
    #: The type's own count flag from before ``--fleet`` (``--streetlights``), kept working for
    #: existing scripts; a type added since has none.
    count_flag: ClassVar[str | None] = None

    def __init__(self, placement: Placement, rng: random.Random, fault_rate: float = 1.0) -> None:
        self.placement = placement
        self.rng = rng
        self.fault_rate = fault_rate
        self.seq = 0
        self.last: datetime | None = None
        self.interval = self.device_type.report_interval_s

    @property
    def device_id(self) -> str:
        return self.placement.device_id

    def read(self, now: datetime) -> tuple[Reading, list[Event]]:
        """Advance the behaviour to ``now`` and return the reading taken then."""
        dt = 0.0 if self.last is None else max((now - self.last).total_seconds(), 0.0)
        self.last = now
        reading, events = self.step(now, dt)
        self.seq += 1
        return reading, events

    @abstractmethod
    def step(self, now: datetime, dt: float) -> tuple[Reading, list[Event]]:
        """Behaviour over the ``dt`` seconds ending at ``now``; readings use ``self.seq``."""

    @abstractmethod
    def apply(self, command: Command) -> None:
        """Carry out a validated command from the next reading on, or raise
        :class:`smartcity.commands.CommandRejected` saying why not (the simulated fleet and the
        edge agent's ``simulated`` driver both call this)."""

    def chance(self, per_hour: float, dt: float) -> bool:
        """True with the probability of an event of rate ``per_hour`` within ``dt`` seconds."""
        return self.rng.random() < 1.0 - math.exp(-per_hour * dt / 3600.0)


def place(rng: random.Random, zone: Zone, device_id: str) -> Placement:
    """A point in ``zone``, scattered around its centroid."""
    r = zone.radius_m * math.sqrt(rng.random())
    a = rng.uniform(0, 2 * math.pi)
    lat = zone.lat + (r * math.cos(a)) / 111_320
    lon = zone.lon + (r * math.sin(a)) / (111_320 * math.cos(math.radians(zone.lat)))
    return Placement(device_id, zone.name, round(lat, 6), round(lon, 6))


def pick_zone(rng: random.Random) -> Zone:
    return rng.choices(ZONES, weights=[z.weight for z in ZONES])[0]


def local_hour(now: datetime) -> float:
    t = now.astimezone(LOCAL_TZ)
    return t.hour + t.minute / 60 + t.second / 3600


def sun_elevation(now: datetime, lat: float = CENTRE[0], lon: float = CENTRE[1]) -> float:
    """Solar elevation in degrees (NOAA's low-accuracy formula, good to a fraction of a degree)."""
    day = now.astimezone(UTC).timetuple().tm_yday
    hours = now.astimezone(UTC).hour + now.minute / 60 + now.second / 3600
    g = 2 * math.pi / 365 * (day - 1 + (hours - 12) / 24)
    decl = (
        0.006918
        - 0.399912 * math.cos(g)
        + 0.070257 * math.sin(g)
        - 0.006758 * math.cos(2 * g)
        + 0.000907 * math.sin(2 * g)
    )
    eqtime = 229.18 * (
        0.000075
        + 0.001868 * math.cos(g)
        - 0.032077 * math.sin(g)
        - 0.014615 * math.cos(2 * g)
        - 0.040849 * math.sin(2 * g)
    )
    solar_minutes = hours * 60 + eqtime + 4 * lon
    hour_angle = math.radians(solar_minutes / 4 - 180)
    phi = math.radians(lat)
    cos_zenith = math.sin(phi) * math.sin(decl) + math.cos(phi) * math.cos(decl) * math.cos(
        hour_angle
    )
    return 90 - math.degrees(math.acos(max(-1.0, min(1.0, cos_zenith))))


def to_ms(t: datetime) -> datetime:
    """Device clocks report milliseconds."""
    return t - timedelta(microseconds=t.microsecond % 1000)
