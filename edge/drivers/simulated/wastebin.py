"""A simulated waste bin: its reporting interval can be changed."""

from __future__ import annotations

from edge.drivers.simulated.base import SimulatedDriver
from simulators.wastebin import SimulatedWastebin
from smartcity.devices.base import Command
from smartcity.devices.wastebin import Wastebin


class SimulatedWastebinDriver(SimulatedDriver):
    device_type = Wastebin
    sim = SimulatedWastebin
    device: SimulatedWastebin

    def apply(self, command: Command) -> None:
        super().apply(command)
        self.interval = self.device.interval  # the agent reads the device this often
