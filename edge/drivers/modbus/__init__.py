"""The ``modbus`` driver: energy meters and lighting controllers in a lighting cabinet.

Device models are data (``maps/<model>.toml``, :mod:`edge.drivers.modbus.registermap`); the
driver (:mod:`edge.drivers.modbus.driver`) reads every unit on one port, TCP or RTU, and the
link (:mod:`edge.drivers.modbus.link`) is the only module that imports pymodbus, so an agent
with another driver never loads it.
"""
