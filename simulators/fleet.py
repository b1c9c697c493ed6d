"""A seeded fleet of simulated devices, each reporting at its own pace on a shared clock.

The same seed, counts and start time give the same devices, places and messages, byte for byte.
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from simulators import SIMULATORS, SimulatedDevice
from simulators.base import pick_zone, place


def build_fleet(
    seed: int, counts: dict[str, int], fault_rate: float = 1.0, id_prefix: str = ""
) -> list[SimulatedDevice]:
    """``counts`` maps device type to how many; each device has its own seeded generator.

    ``id_prefix`` goes before each id and changes nothing else: same places, same readings.
    """
    fleet: list[SimulatedDevice] = []
    for type_name, count in counts.items():
        sim = SIMULATORS[type_name]
        for i in range(count):
            rng = random.Random(f"{seed}:{type_name}:{i}")
            placement = place(rng, pick_zone(rng), f"{id_prefix}{sim.id_prefix}-{i + 1:05d}")
            fleet.append(sim(placement, rng, fault_rate))
    return fleet


def schedule(
    fleet: list[SimulatedDevice], start: datetime
) -> Iterator[tuple[datetime, SimulatedDevice]]:
    """Every device's reading times in time order, forever; first readings spread over a period."""
    heap: list[tuple[int, int]] = []
    start_ms = int(start.timestamp() * 1000)
    for i, dev in enumerate(fleet):
        offset = int(dev.rng.uniform(0, dev.interval) * 1000)
        heap.append((start_ms + offset, i))
    heapq.heapify(heap)
    while heap:
        due_ms, i = heapq.heappop(heap)
        dev = fleet[i]
        yield datetime.fromtimestamp(due_ms / 1000, UTC), dev
        heapq.heappush(heap, (due_ms + int(dev.interval * 1000), i))


class SimClock:
    """Maps simulated time to wall time: ``speed`` times faster, never ahead of the real clock.

    ``speed`` 0 means as fast as possible. Either way a reading is never published before its
    timestamp has come, so a backfill from the past catches up and then runs in real time.
    """

    def __init__(self, start: datetime, speed: float) -> None:
        self.start = start.timestamp()
        self.speed = speed
        self.wall0 = time.time()

    def wait_until(self, t: datetime) -> None:
        target = t.timestamp()
        wall = self.wall0 + (target - self.start) / self.speed if self.speed > 0 else 0.0
        delay = max(wall, target) - time.time()
        if delay > 0:
            time.sleep(delay)


def default_start(backfill_s: float = 0.0) -> datetime:
    now = datetime.now(UTC).replace(microsecond=0)
    return now - timedelta(seconds=backfill_s)
