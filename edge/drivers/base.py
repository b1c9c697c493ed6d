"""The driver interface: how the agent reads a device and applies commands to it.

A driver knows one protocol for one device type; the agent around it does everything else
(numbering, outbox, MQTT, health). Real protocols fit the same shape: a Modbus TCP energy meter
in a lighting cabinet is polled once per ``read``; an OCPP charger or a LoRaWAN network server
pushes data, which the driver buffers and hands over at the next ``read`` (zero, one or many
readings); ``apply`` writes a register, sends an OCPP ChangeAvailability, or queues a downlink.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from smartcity.devices import DeviceType, Event, Reading
from smartcity.devices.base import Command

if TYPE_CHECKING:
    from edge.settings import EdgeSettings


@dataclass(frozen=True, slots=True)
class Sample:
    """What one ``read`` got: readings (their ``seq`` is set by the agent) and events."""

    readings: list[Reading] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


class DriverError(Exception):
    """The device could not be read now (the agent logs it, reports it and tries again)."""


class CommandRejected(Exception):
    """A valid command this device cannot carry out; ``reason`` goes back to the sender."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Driver(ABC):
    """One device, read every ``interval`` seconds; commands may change what it does."""

    device_type: ClassVar[type[DeviceType]]

    def __init__(self, settings: EdgeSettings) -> None:
        self.device_id = settings.device_id
        #: Seconds between reads; a command (a bin's ``setInterval``) may change it.
        self.interval = settings.reading_interval

    @abstractmethod
    def read(self, now: datetime) -> Sample:
        """Take the device's reading(s) now; raise :class:`DriverError` if it cannot answer."""

    @abstractmethod
    def apply(self, command: Command) -> None:
        """Carry out a validated command, or raise :class:`CommandRejected` saying why not."""

    def close(self) -> None:  # noqa: B027 - optional hook, most drivers hold nothing
        """Release the device connection, if the driver holds one."""
