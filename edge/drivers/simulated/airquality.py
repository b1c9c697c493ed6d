"""A simulated air-quality station: its reporting interval can be changed."""

from __future__ import annotations

from edge.drivers.simulated.base import SimulatedDriver
from simulators.airquality import SimulatedAirquality
from smartcity.devices.airquality import Airquality
from smartcity.devices.base import Command


class SimulatedAirqualityDriver(SimulatedDriver):
    device_type = Airquality
    sim = SimulatedAirquality
    device: SimulatedAirquality

    def apply(self, command: Command) -> None:
        super().apply(command)
        self.interval = self.device.interval  # the agent reads the station this often
