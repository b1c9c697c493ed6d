"""A simulated waste bin: its reporting interval can be changed."""

from __future__ import annotations

from edge.drivers.base import CommandRejected
from edge.drivers.simulated.base import SimulatedDriver
from simulators.wastebin import SimulatedWastebin
from smartcity.devices.base import Command
from smartcity.devices.wastebin import IntervalCommand, Wastebin


class SimulatedWastebinDriver(SimulatedDriver):
    device_type = Wastebin
    sim = SimulatedWastebin
    device: SimulatedWastebin

    def apply(self, command: Command) -> None:
        if not isinstance(command, IntervalCommand):
            raise CommandRejected(f"a waste bin cannot {type(command).__name__}")
        self.interval = self.device.interval = command.interval
