"""The ``simulated`` driver: a device from ``simulators/`` stands in for the hardware.

It reuses the simulators' behaviour classes, so a demo agent produces exactly what a simulated
fleet does, and commands act on the same state (a forced lamp, a disabled connector).
"""

from __future__ import annotations

import random
import time
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from edge.drivers.base import Driver, DriverOptions, Sample
from simulators.base import Placement, place
from smartcity.city import ZONES
from smartcity.devices.base import Command

if TYPE_CHECKING:
    from edge.settings import EdgeSettings
    from simulators.base import SimulatedDevice


class SimulatedOptions(DriverOptions):
    read_delay: float = Field(
        0.0,
        ge=0,
        le=600,
        description="Seconds each read takes, like a slow field bus (demos and tests).",
    )


class SimulatedDriver(Driver):
    #: The behaviour class from ``simulators/`` this driver runs.
    sim: ClassVar[type[SimulatedDevice]]
    Options = SimulatedOptions
    options: SimulatedOptions

    def __init__(self, settings: EdgeSettings) -> None:
        super().__init__(settings)
        # seeded by the device id: the same device behaves the same after a restart
        rng = random.Random(f"edge:{settings.device_id}")
        zone = next((z for z in ZONES if z.name == settings.zone), ZONES[0])
        placement = place(rng, zone, settings.device_id)
        if settings.lat is not None and settings.lon is not None:
            placement = Placement(settings.device_id, zone.name, settings.lat, settings.lon)
        self.device = self.sim(placement, rng)

    def read(self, now: datetime) -> Sample:
        if self.options.read_delay:
            time.sleep(self.options.read_delay)
        reading, events = self.device.read(now)
        return Sample([reading], events)

    def apply(self, command: Command) -> None:
        """The simulated device carries it out (``simulators/``: the fleet of ``smartcity up``
        answers commands with the very same code)."""
        self.device.apply(command)
