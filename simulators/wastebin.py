"""Waste bins: fill through the day at their stream's pace, emptied by the morning collection round.

Now and then a bin is left with its lid open or catches fire (temperature jumps, status
``burning``): the alarms operators must see at once.
"""

from __future__ import annotations

import math
import random
from datetime import datetime

from simulators.base import Placement, SimulatedDevice, local_hour, to_ms
from smartcity.commands import CommandRejected
from smartcity.devices import Event, Reading
from smartcity.devices.base import Command
from smartcity.devices.wastebin import (
    BinAlarm,
    BinEmptied,
    BinStatus,
    IntervalCommand,
    Wastebin,
    WastebinReading,
    WasteKind,
)

#: Share of bins per stream, fill per day (fraction of the bin) and collection period in days.
STREAMS: dict[WasteKind, tuple[float, float, int]] = {
    "residual": (0.25, 0.35, 2),
    "organic": (0.20, 0.45, 2),
    "paper": (0.18, 0.25, 4),
    "plastic": (0.17, 0.30, 3),
    "glassAndCans": (0.12, 0.12, 7),
    "green": (0.08, 0.20, 7),
}
COLLECTION_HOUR = 6.0
FIRES_PER_HOUR = 1 / (2000 * 24)
LID_OPEN_PER_HOUR = 1 / (300 * 24)


class SimulatedWastebin(SimulatedDevice):
    device_type = Wastebin
    id_prefix = "wb"
    fleet_size = 100
    count_flag = "bins"

    def __init__(self, placement: Placement, rng: random.Random, fault_rate: float = 1.0) -> None:
        super().__init__(placement, rng, fault_rate)
        kinds = list(STREAMS)
        self.kind: WasteKind = rng.choices(kinds, [STREAMS[k][0] for k in kinds])[0]
        _, per_day, self.period = STREAMS[self.kind]
        self.per_day = per_day * rng.uniform(0.6, 1.6)
        self.round_day = rng.randrange(self.period)
        self.fill = rng.uniform(0.0, 0.7)
        self.battery = rng.uniform(0.5, 1.0)
        self.status: BinStatus = "ok"
        self.alarm_left = 0.0
        self.heat = 0.0
        self.collected_day = -1

    def step(self, now: datetime, dt: float) -> tuple[Reading, list[Event]]:
        events: list[Event] = []
        hour = local_hour(now)
        # people throw more away by day than by night
        activity = (
            0.3 + 1.4 * max(0.0, math.sin(math.pi * (hour - 6) / 16)) if 6 <= hour < 22 else 0.3
        )
        self.fill = min(1.0, self.fill + self.per_day * activity * dt / 86_400)
        day = now.toordinal()
        if (
            COLLECTION_HOUR <= hour < COLLECTION_HOUR + 2
            and day % self.period == self.round_day
            and self.collected_day != day
        ):
            self.collected_day = day
            events.append(
                BinEmptied(
                    ts=to_ms(now),
                    kind="emptied",
                    collectedLevel=round(self.fill, 3),
                    storedWasteKind=self.kind,
                )
            )
            self.fill = self.rng.uniform(0.0, 0.03)
        events += self._alarms(now, dt)
        ambient = 12 + 8 * math.sin(math.pi * (hour - 9) / 12) + self.rng.gauss(0, 0.5)
        self.battery = max(0.0, self.battery - dt / (86_400 * 400))
        reading = WastebinReading(
            ts=to_ms(now),
            seq=self.seq,
            fillingLevel=round(self.fill, 3),
            temperature=round(ambient + self.heat, 1),
            storedWasteKind=self.kind,
            status=self.status,
            batteryLevel=round(self.battery, 3),
        )
        return reading, events

    def _alarms(self, now: datetime, dt: float) -> list[Event]:
        if self.status == "ok":
            if self.chance(FIRES_PER_HOUR * self.fault_rate, dt):
                self.status, self.alarm_left, self.heat = (
                    "burning",
                    3600.0,
                    self.rng.uniform(50, 90),
                )
            elif self.chance(LID_OPEN_PER_HOUR * self.fault_rate, dt):
                self.status, self.alarm_left = "lidOpen", 4 * 3600.0
            else:
                return []
            return [BinAlarm(ts=to_ms(now), kind="alarm", status=self.status)]
        self.alarm_left -= dt
        if self.alarm_left > 0:
            return []
        self.status, self.heat = "ok", 0.0
        return [BinAlarm(ts=to_ms(now), kind="alarm", status="ok")]

    def apply(self, command: Command) -> None:
        if not isinstance(command, IntervalCommand):
            raise CommandRejected(f"a waste bin cannot {type(command).__name__}")
        self.interval = command.interval
