"""Drivers by name, then by device type. A new protocol is one folder and one line here."""

from __future__ import annotations

from edge.drivers.base import CommandRejected, Driver, DriverError, DriverOptions, Probe, Sample
from edge.drivers.modbus.streetlight import ModbusStreetlightDriver
from edge.drivers.simulated.airquality import SimulatedAirqualityDriver
from edge.drivers.simulated.evcharger import SimulatedEvchargerDriver
from edge.drivers.simulated.streetlight import SimulatedStreetlightDriver
from edge.drivers.simulated.wastebin import SimulatedWastebinDriver

DRIVERS: dict[str, dict[str, type[Driver]]] = {
    "simulated": {
        d.device_type.name: d
        for d in (
            SimulatedStreetlightDriver,
            SimulatedWastebinDriver,
            SimulatedEvchargerDriver,
            SimulatedAirqualityDriver,
        )
    },
    "modbus": {d.device_type.name: d for d in (ModbusStreetlightDriver,)},
}

__all__ = [
    "DRIVERS",
    "CommandRejected",
    "Driver",
    "DriverError",
    "DriverOptions",
    "Probe",
    "Sample",
]
