"""Street lights: on from dusk to dawn, dimmed late at night; lamps fail and get repaired."""

from __future__ import annotations

import random
from datetime import datetime
from typing import ClassVar

from simulators.base import Placement, SimulatedDevice, local_hour, sun_elevation, to_ms
from smartcity.commands import CommandRejected
from smartcity.devices import Event, Reading
from smartcity.devices.base import Command
from smartcity.devices.streetlight import (
    DimCommand,
    LampStatus,
    LampStatusChanged,
    ScheduleCommand,
    Streetlight,
    StreetlightReading,
    SwitchCommand,
)

RATED_W = (35.0, 50.0, 70.0, 100.0, 150.0)
FAILURES: tuple[tuple[LampStatus, float], ...] = (
    ("defectiveLamp", 0.7),
    ("columnIssue", 0.2),
    ("brokenLantern", 0.1),
)
#: About one lamp in 200 fails per day; repairs take about a day and a half.
FAILURES_PER_HOUR = 1 / (200 * 24)
REPAIRS_PER_HOUR = 1 / 36


class SimulatedStreetlight(SimulatedDevice):
    device_type = Streetlight
    id_prefix = "sl"
    fleet_size = 200
    count_flag = "streetlights"

    #: Dimming schedule: (from local hour, to local hour, level). Commands may replace it.
    default_schedule: ClassVar[tuple[tuple[float, float, float], ...]] = ((23.0, 5.0, 0.5),)

    def __init__(self, placement: Placement, rng: random.Random, fault_rate: float = 1.0) -> None:
        super().__init__(placement, rng, fault_rate)
        self.rated = rng.choice(RATED_W)
        self.energy = rng.uniform(100.0, 4000.0)
        self.status: LampStatus = "ok"
        #: Photocell threshold: each lamp switches at a slightly different sun elevation.
        self.threshold = rng.uniform(-3.0, 0.0)
        self.schedule = list(self.default_schedule)
        self.forced: str | None = None  # "on"/"off" set by a command, None = automatic

    def level(self, now: datetime) -> float:
        if self.forced == "off":
            return 0.0
        if self.forced != "on" and sun_elevation(now) > self.threshold:
            return 0.0
        hour = local_hour(now)
        for start, end, level in self.schedule:
            inside = start <= hour < end if start < end else hour >= start or hour < end
            if inside:
                return level
        return 1.0

    def step(self, now: datetime, dt: float) -> tuple[Reading, list[Event]]:
        events: list[Event] = []
        if self.status == "ok" and self.chance(FAILURES_PER_HOUR * self.fault_rate, dt):
            kinds, weights = zip(*FAILURES, strict=True)
            self.status = self.rng.choices(kinds, weights)[0]
            events.append(
                LampStatusChanged(ts=to_ms(now), kind="statusChanged", status=self.status)
            )
        elif self.status != "ok" and self.chance(REPAIRS_PER_HOUR, dt):
            self.status = "ok"
            events.append(LampStatusChanged(ts=to_ms(now), kind="statusChanged", status="ok"))
        level = self.level(now)
        lit = level > 0 and self.status in ("ok", "brokenLantern")
        power = self.rated * level * self.rng.uniform(0.97, 1.03) if lit else 0.0
        self.energy += power * dt / 3_600_000
        voltage = self.rng.gauss(230.0, 2.0)
        state = "off" if level == 0 else "low" if level < 1 else "on"
        reading = StreetlightReading(
            ts=to_ms(now),
            seq=self.seq,
            powerState=state,
            illuminanceLevel=level,
            activePower=round(power, 2),
            totalActiveEnergyImport=round(self.energy, 4),
            voltage=round(voltage, 1),
            current=round(power / (voltage * 0.95), 3),
            ratedPower=self.rated,
            status=self.status,
        )
        return reading, events

    def apply(self, command: Command) -> None:
        if isinstance(command, SwitchCommand):
            self.forced = None if command.state == "auto" else command.state
        elif isinstance(command, DimCommand):
            self.schedule = [(0.0, 24.0, command.level)]  # one step covering the whole day
        elif isinstance(command, ScheduleCommand):
            self.schedule = [(s.start, s.end, s.level) for s in command.steps]
        else:
            raise CommandRejected(f"a street light cannot {type(command).__name__}")
