"""A simulated street light: switch, dim and schedule commands act on its lamp."""

from __future__ import annotations

from edge.drivers.base import CommandRejected
from edge.drivers.simulated.base import SimulatedDriver
from simulators.streetlight import SimulatedStreetlight
from smartcity.devices.base import Command
from smartcity.devices.streetlight import DimCommand, ScheduleCommand, Streetlight, SwitchCommand


class SimulatedStreetlightDriver(SimulatedDriver):
    device_type = Streetlight
    sim = SimulatedStreetlight
    device: SimulatedStreetlight

    def apply(self, command: Command) -> None:
        lamp = self.device
        if isinstance(command, SwitchCommand):
            lamp.forced = None if command.state == "auto" else command.state
        elif isinstance(command, DimCommand):
            lamp.schedule = [(0.0, 24.0, command.level)]  # one step covering the whole day
        elif isinstance(command, ScheduleCommand):
            lamp.schedule = [(s.start, s.end, s.level) for s in command.steps]
        else:
            raise CommandRejected(f"a street light cannot {type(command).__name__}")
