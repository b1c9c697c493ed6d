"""The ``modbus`` driver: one reading from the units on one port, commands as register writes.

A lighting cabinet typically has an energy meter and a lighting controller on one RS-485 line
(or behind one Modbus TCP gateway), each with its own slave id and register map; the agent's
one reading of the street light is the union of what they give, plus ``constants`` for what
no register holds (the lamp's nameplate power). A reading is all or nothing: the contract
needs every field, so when one unit does not answer the read fails with the reason, the agent
counts it in its health, and the next read tries again. The port is reopened with back-off
(``reconnect_min_delay`` doubling up to ``reconnect_max_delay``); between attempts a read fails
at once, so a dead gateway never makes every read wait for a connect timeout.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from edge.drivers.base import CommandRejected, Driver, DriverError, DriverOptions, Probe, Sample
from edge.drivers.modbus.errors import LinkError
from edge.drivers.modbus.registermap import (
    Block,
    MapError,
    RegisterMap,
    contract_unit,
    find_map,
    load_map,
    plan,
)
from smartcity.contract import describe
from smartcity.devices import DeviceType
from smartcity.devices.base import Command

if TYPE_CHECKING:
    from edge.drivers.modbus.link import Link
    from edge.settings import EdgeSettings


class UnitOptions(BaseModel):
    """One device on the port."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slave_id: int = Field(
        ge=1, le=247, description="Its Modbus address (slave id / unit id), set on the device."
    )
    model: str = Field(
        description="Its register map: a name in maps_dir or the shipped maps, or a .toml path."
    )


class ModbusOptions(DriverOptions):
    #: The device type whose contract the maps must fill (set by each driver's own subclass).
    device_type: ClassVar[type[DeviceType]]

    transport: Literal["tcp", "rtu"] = Field(
        "tcp", description="tcp: Modbus TCP (a meter or an RS-485 gateway on the network); "
        "rtu: Modbus RTU on a serial port."
    )  # fmt: skip
    host: str | None = Field(None, description="tcp: the device's or gateway's address.")
    port: int = Field(502, ge=1, le=65535, description="tcp: its port.")
    serial_port: str | None = Field(None, description="rtu: the serial device, /dev/ttyUSB0.")
    baudrate: int = Field(9600, ge=300, le=921_600, description="rtu: bits per second.")
    parity: Literal["N", "E", "O"] = Field("N", description="rtu: N, E or O, as on the devices.")
    bytesize: Literal[7, 8] = 8
    stopbits: Literal[1, 2] = 1
    timeout: float = Field(1.0, gt=0, le=60, description="Seconds to wait for each answer.")
    retries: int = Field(1, ge=0, le=5, description="Tries again after a request had no answer.")
    reconnect_min_delay: float = Field(1.0, gt=0, le=600)
    reconnect_max_delay: float = Field(60.0, gt=0, le=3600)
    maps_dir: Path | None = Field(
        None, description="The installer's own register maps, searched before the shipped ones."
    )
    units: list[UnitOptions] = Field(min_length=1, description="The devices on this port.")
    constants: dict[str, float | str] = Field(
        default_factory=dict,
        description="Contract fields no register gives, e.g. ratedPower = 100 (the nameplate).",
    )

    @model_validator(mode="after")
    def _usable(self) -> ModbusOptions:
        if self.transport == "tcp" and not self.host:
            raise ValueError("transport tcp needs host")
        if self.transport == "rtu" and not self.serial_port:
            raise ValueError("transport rtu needs serial_port")
        if self.reconnect_min_delay > self.reconnect_max_delay:
            raise ValueError("reconnect_min_delay must not exceed reconnect_max_delay")
        ids = [u.slave_id for u in self.units]
        if len(set(ids)) != len(ids):
            raise ValueError(f"two units have the same slave_id: {ids}")
        self.maps()  # every map found, valid, and filling the contract
        return self

    def maps(self) -> list[tuple[UnitOptions, RegisterMap]]:
        """Each unit with its map, checked: together with ``constants`` they give every field
        of the contract, each once."""
        device_type = self.device_type
        loaded = []
        given: dict[str, str] = {}
        for unit in self.units:
            regmap = load_map(find_map(unit.model, self.maps_dir))
            try:
                regmap.check_against(device_type)
            except MapError as exc:
                raise MapError(f"register map {unit.model}: {exc}") from None
            for reg in regmap.registers:
                if reg.field in given:
                    raise ValueError(f"{reg.field} comes from both {given[reg.field]} and "
                                     f"{unit.model}: drop it from one map")  # fmt: skip
                given[reg.field] = unit.model
            loaded.append((unit, regmap))
        model = device_type.reading_model
        for field in self.constants:
            if field not in model.model_fields or field in ("ts", "seq"):
                raise ValueError(f"constants.{field} is not a {device_type.name} field")
            if field in given:
                raise ValueError(f"constants.{field} also comes from {given[field]}")
            given[field] = "constants"
        fields: dict[str, Any] = {f: (model.model_fields[f].annotation, model.model_fields[f])
                                  for f in self.constants}  # fmt: skip
        try:  # each constant in its field's type and range, as the contract will check it
            create_model("Constants", **fields).model_validate(self.constants)
        except ValidationError as exc:
            raise ValueError(f"constants: {describe(exc)}") from None
        missing = [
            f
            for f, info in model.model_fields.items()
            if f not in ("ts", "seq") and info.is_required() and f not in given
        ]
        if missing:
            raise ValueError(
                f"no register map or constant gives {', '.join(missing)}: add them to a unit's "
                "map, or to [edge.driver_options.constants]"
            )
        return loaded


@dataclass(frozen=True, slots=True)
class Unit:
    slave_id: int
    model: str
    regmap: RegisterMap
    blocks: tuple[Block, ...]

    def label(self) -> str:
        return f"unit {self.slave_id} ({self.model})"


class ModbusDriver(Driver):
    Options = ModbusOptions
    options: ModbusOptions

    def __init__(self, settings: EdgeSettings) -> None:
        super().__init__(settings)
        self.units = [
            Unit(u.slave_id, u.model, m, tuple(plan(m.registers, m.max_registers, m.max_gap)))
            for u, m in self.options.maps()
        ]
        self.link: Link | None = None
        self.delay = self.options.reconnect_min_delay
        self.next_connect = 0.0
        self.last_failure = ""

    def start(self) -> None:
        # imported here: an agent with another driver never loads pymodbus
        from edge.drivers.modbus.link import Link

        if self.link is None:
            self.link = Link(self.options)

    def close(self) -> None:
        if self.link is not None:
            self.link.close()

    # -- reading ----------------------------------------------------------------------------

    def read(self, now: datetime) -> Sample:
        link = self._connected()
        values: dict[str, Any] = dict(self.options.constants)
        silent = 0
        failures = []
        for unit in self.units:
            try:
                for block in unit.blocks:
                    words = link.read(unit.slave_id, block.function, block.start, block.count)
                    values |= block.values(words)
            except (LinkError, ValueError) as exc:
                failures.append(f"{unit.label()}: {exc}")
                silent += isinstance(exc, LinkError) and exc.silent
                if isinstance(exc, LinkError) and exc.lost:
                    self._lost(str(exc))
                    break
        if failures:
            if silent == len(self.units):
                # nobody answered: the cable or the gateway, not one device; open it again
                self._lost("no unit answered")
            raise DriverError(f"{link.where}: {'; '.join(failures)}")
        self.delay = self.options.reconnect_min_delay
        try:
            reading = self.device_type.reading_model.model_validate({"ts": now, "seq": 0, **values})
        except ValidationError as exc:
            raise DriverError(
                f"the units' values do not fit the contract: {describe(exc)}"
            ) from None
        return Sample([reading])

    def _connected(self) -> Link:
        assert self.link is not None, "start() first"
        if self.link.connected:
            return self.link
        wait = self.next_connect - time.monotonic()
        if wait > 0:
            raise DriverError(
                f"{self.link.where}: not connected ({self.last_failure}); "
                f"next attempt in {wait:.1f} s"
            )
        try:
            self.link.connect()
        except LinkError as exc:
            self._lost(str(exc))
            wait = self.next_connect - time.monotonic()
            raise DriverError(f"{exc}; next attempt in {wait:.1f} s") from None
        return self.link

    def _lost(self, reason: str) -> None:
        """Close the port and try it again after a jittered, doubling delay."""
        assert self.link is not None
        self.link.close()
        self.last_failure = reason
        self.next_connect = time.monotonic() + self.delay * random.uniform(0.5, 1.0)
        self.delay = min(self.delay * 2, self.options.reconnect_max_delay)

    # -- commands ---------------------------------------------------------------------------

    def apply(self, command: Command) -> None:
        action = getattr(command, "action", None)
        targets = [
            (u, u.regmap.commands[action]) for u in self.units if action in u.regmap.commands
        ]
        if not targets:
            raise CommandRejected(
                f"no unit on this port takes {action!r} (maps: "
                f"{', '.join(u.model for u in self.units)})"
            )
        link = self._connected()
        for unit, write in targets:
            value = getattr(command, write.param)
            try:
                words = write.words(value)
            except ValueError as exc:
                raise CommandRejected(f"{unit.label()}: {exc}") from None
            try:
                link.write(unit.slave_id, write.address, words)
            except LinkError as exc:
                if exc.lost:
                    self._lost(str(exc))
                raise DriverError(
                    f"{unit.label()}: writing {write.param} to holding {write.address}: {exc}"
                ) from None

    # -- the installer's check --------------------------------------------------------------

    def probe(self) -> list[Probe]:
        """Open the port, then read every mapped register on its own, with its unit."""
        assert self.link is not None, "start() first"
        try:
            self.link.connect()
        except LinkError as exc:
            return [
                Probe(
                    False,
                    str(exc),
                    "tcp: check host and port, and that the device or gateway is on the network; "
                    "rtu: check serial_port (ls /dev/serial/by-id/), and under systemd the "
                    "serial.conf drop-in (docs/edge.md)",
                )
            ]
        out = [Probe(True, f"connected to {self.link.where}")]
        for unit in self.units:
            for reg in unit.regmap.registers:
                what = f"{unit.label()} {reg.where()}: {reg.field}"
                try:
                    words = self.link.read(unit.slave_id, reg.function, reg.address, reg.size)
                    value = reg.value(words)
                except (LinkError, ValueError) as exc:
                    out.append(Probe(False, f"{what}: {exc}"))
                    continue
                unit_name = contract_unit(self.device_type, reg.field)
                shown = f"{value:.10g}" if isinstance(value, float) else value
                suffix = f" {unit_name}" if unit_name and unit_name != "1" else ""
                out.append(Probe(True, f"{what} = {shown}{suffix}"))
        return out
