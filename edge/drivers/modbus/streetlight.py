"""A street light's lighting cabinet over Modbus: an energy meter and a lighting controller."""

from __future__ import annotations

from edge.drivers.modbus.driver import ModbusDriver, ModbusOptions
from smartcity.devices.streetlight import Streetlight


class StreetlightModbusOptions(ModbusOptions):
    device_type = Streetlight


class ModbusStreetlightDriver(ModbusDriver):
    device_type = Streetlight
    Options = StreetlightModbusOptions
