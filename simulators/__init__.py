"""Simulated devices and fleets (``smartcity simulate``): city-scale data with no hardware."""

from simulators.airquality import SimulatedAirquality
from simulators.base import SimulatedDevice
from simulators.evcharger import SimulatedEvcharger
from simulators.streetlight import SimulatedStreetlight
from simulators.wastebin import SimulatedWastebin

#: Behaviour per device type. Adding a type is one module and one line here.
SIMULATORS: dict[str, type[SimulatedDevice]] = {
    s.device_type.name: s
    for s in (SimulatedStreetlight, SimulatedWastebin, SimulatedEvcharger, SimulatedAirquality)
}

__all__ = ["SIMULATORS", "SimulatedDevice"]
