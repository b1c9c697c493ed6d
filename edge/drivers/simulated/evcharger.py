"""A simulated charging station: connectors can be taken out of service and back."""

from __future__ import annotations

from edge.drivers.simulated.base import SimulatedDriver
from simulators.evcharger import SimulatedEvcharger
from smartcity.devices.evcharger import Evcharger


class SimulatedEvchargerDriver(SimulatedDriver):
    device_type = Evcharger
    sim = SimulatedEvcharger
    device: SimulatedEvcharger
