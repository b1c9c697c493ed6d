"""The driver interface: how the agent reads a device and applies commands to it.

A driver knows one protocol for one device type; the agent around it does everything else
(numbering, outbox, MQTT, health). Real protocols fit the same shape: a Modbus TCP energy meter
in a lighting cabinet is polled once per ``read``; an OCPP charger or a LoRaWAN network server
pushes data, which the driver buffers and hands over at the next ``read`` (zero, one or many
readings); ``apply`` writes a register, sends an OCPP ChangeAvailability, or queues a downlink.

The agent calls a driver from one thread of its own (``edge.drivers.thread``), never from the
MQTT loop, one call at a time: ``start`` before the first ``read`` or ``apply`` (again after it
failed), then ``read`` and ``apply`` as they come, ``close`` on the way out. A driver may block
(a Modbus timeout, a slow charger) without stalling MQTT keepalives and PUBACKs, and needs no
locks of its own. Its own settings come from ``[edge.driver_options]``, checked at start-up
against its ``Options`` model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, NamedTuple

from pydantic import BaseModel, ConfigDict

from smartcity.commands import CommandRejected
from smartcity.devices import DeviceType, Event, Reading
from smartcity.devices.base import Command

if TYPE_CHECKING:
    from edge.settings import EdgeSettings


@dataclass(frozen=True, slots=True)
class Sample:
    """What one ``read`` got: readings (their ``seq`` is set by the agent) and events."""

    readings: list[Reading] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


class Probe(NamedTuple):
    """One line of what ``edge check`` found on the device (a register and its value)."""

    ok: bool
    text: str
    #: what to do about a line that is not ok (the check has a general advice otherwise)
    next_step: str = ""


__all__ = ["CommandRejected", "Driver", "DriverError", "DriverOptions", "Probe", "Sample"]


class DriverError(Exception):
    """The device could not be read now (the agent logs it, reports it and tries again)."""


class DriverOptions(BaseModel):
    """A driver's own settings (``[edge.driver_options]``): subclass it, add fields, and set it as
    the driver's ``Options``. Unknown keys are refused, so a typo fails at start-up."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Driver(ABC):
    """One device, read every ``interval`` seconds; commands may change what it does."""

    device_type: ClassVar[type[DeviceType]]
    #: The model of this driver's ``[edge.driver_options]`` (an IP address, a Modbus unit id...).
    Options: ClassVar[type[DriverOptions]] = DriverOptions

    def __init__(self, settings: EdgeSettings) -> None:
        self.device_id = settings.device_id
        #: Seconds between reads; a command (a bin's ``setInterval``) may change it.
        self.interval = settings.reading_interval
        self.options = self.Options.model_validate(settings.driver_options)

    def start(self) -> None:  # noqa: B027 - optional hook, most drivers hold nothing
        """Connect to the device (open the Modbus TCP socket, start the OCPP listener). Called
        before the first ``read`` or ``apply``; raise :class:`DriverError` to be retried then."""

    @abstractmethod
    def read(self, now: datetime) -> Sample:
        """Take the device's reading(s) now; raise :class:`DriverError` if it cannot answer."""

    @abstractmethod
    def apply(self, command: Command) -> None:
        """Carry out a validated command, or raise :class:`CommandRejected` saying why not."""

    def probe(self) -> list[Probe]:
        """What ``smartcity edge check`` shows of the device beyond one reading, after ``start``:
        a field bus driver reads each mapped register once. None for a simulated device."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook, most drivers hold nothing
        """Release the device connection, if the driver holds one (also when ``start`` failed)."""
