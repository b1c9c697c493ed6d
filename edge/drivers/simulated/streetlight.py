"""A simulated street light: switch, dim and schedule commands act on its lamp."""

from __future__ import annotations

from edge.drivers.simulated.base import SimulatedDriver
from simulators.streetlight import SimulatedStreetlight
from smartcity.devices.streetlight import Streetlight


class SimulatedStreetlightDriver(SimulatedDriver):
    device_type = Streetlight
    sim = SimulatedStreetlight
    device: SimulatedStreetlight
