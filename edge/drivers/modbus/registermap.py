"""Register maps: a device model described as data, one TOML file per model.

A map says, for each contract field the model gives, where it is (register address, function),
how it is encoded (data type, word and byte order), and how to turn it into the contract's
value (scale, unit, or a table of coded values). Commands a model takes are register writes,
described the same way. Adding a meter or a controller is writing one file (docs/edge.md);
a map is checked against the device type's contract when the agent starts, so a wrong unit
or an unknown field fails there, with the file and the key to fix, not in the field.

The map also says how the device likes to be read: ``max_registers`` per request (Modbus
allows 125; some meters allow fewer) and ``max_gap``, how many unmapped registers a request
may span to join two mapped ones (0 unless the vendor says reading across them is harmless).
"""

from __future__ import annotations

import functools
import math
import struct
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from smartcity.contract import describe
from smartcity.devices import DeviceType

#: The maps shipped with the agent; an installer's own ``maps_dir`` is searched first.
SHIPPED_MAPS = Path(__file__).parent / "maps"
#: The Modbus limit on registers per read request (the PDU holds 250 data bytes).
MODBUS_MAX_READ = 125

DataType = Literal["int16", "uint16", "int32", "uint32", "float32"]
Order = Literal["big", "little"]
Function = Literal["holding", "input"]

_FORMATS: dict[str, str] = {
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "float32": "f",
}


class MapError(ValueError):
    """A map that cannot be used: the message names the file and the key."""


class Encoding(BaseModel):
    """How a value sits in one or two 16-bit registers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: int = Field(ge=0, le=65535, description="Register address as sent on the wire.")
    type: DataType
    word_order: Order = Field("big", description="big: the first register is the high word.")
    byte_order: Order = Field("big", description="big: each register's high byte comes first.")
    scale: float = Field(1.0, description="Contract value = register value x scale.")
    description: str = Field("", description="The vendor's name for it, as in its document.")

    @property
    def size(self) -> int:
        return 1 if self.type.endswith("16") else 2

    @model_validator(mode="after")
    def _usable_scale(self) -> Encoding:
        if self.scale == 0 or not math.isfinite(self.scale):
            raise ValueError("scale must be a finite number other than 0")
        return self

    def decode(self, words: typing.Sequence[int]) -> float:
        """The scaled value of this register's words (``size`` of them), without the binary
        noise of float32 and of the scale: 230.2 V, not 230.1999969482422 V."""
        raw = self.decode_raw(words)
        if self.scale != 1:
            return float(f"{raw * self.scale:.12g}")
        if self.type != "float32" or not math.isfinite(raw):
            return raw
        # the shortest decimal that is this very float32, as the meter's display shows it
        exact = struct.pack(">f", raw)
        for digits in range(6, 9):
            shortest = float(f"{raw:.{digits}g}")
            if struct.pack(">f", shortest) == exact:
                return shortest
        return raw

    def decode_raw(self, words: typing.Sequence[int]) -> float:
        ordered = list(words) if self.word_order == "big" else list(reversed(words))
        data = b"".join(
            w.to_bytes(2, "big" if self.byte_order == "big" else "little") for w in ordered
        )
        (raw,) = struct.unpack(">" + _FORMATS[self.type], data)
        return float(raw)

    def encode_raw(self, raw: float) -> list[int]:
        """The words that hold ``raw`` (already unscaled), in this register's orders."""
        value = raw if self.type == "float32" else round(raw)
        try:
            data = struct.pack(">" + _FORMATS[self.type], value)
        except struct.error:
            raise ValueError(f"{raw:g} does not fit a {self.type} register") from None
        words = [
            int.from_bytes(data[i : i + 2], "big" if self.byte_order == "big" else "little")
            for i in range(0, len(data), 2)
        ]
        return words if self.word_order == "big" else list(reversed(words))


class Register(Encoding):
    """A register read into one contract field."""

    field: str = Field(description="The contract field it fills, e.g. activePower.")
    function: Function = Field(description="holding (read with FC 3) or input (FC 4).")
    unit: str | None = Field(None, description="Its unit after scaling: the contract's.")
    values: dict[int, str] | None = Field(
        None, description="For coded registers: register value -> contract value."
    )

    def value(self, words: typing.Sequence[int]) -> float | str:
        """The contract value; ValueError if the device sent one the map does not know."""
        if self.values is None:
            value = self.decode(words)
            if not math.isfinite(value):
                raise ValueError(f"{self.field}: the device sent {value} (not a number)")
            return value
        raw = int(self.decode_raw(words))
        if raw not in self.values:
            raise ValueError(f"{self.field}: register value {raw} is none of {sorted(self.values)}")
        return self.values[raw]

    def where(self) -> str:
        name = f" ({self.description})" if self.description else ""
        return f"{self.function} {self.address}{name}"


class Write(Encoding):
    """A command parameter written into a holding register (FC 6, or FC 16 for two words)."""

    param: str = Field(description="The command's parameter written, e.g. level.")
    values: dict[str, int] | None = Field(
        None, description="For coded parameters: command value -> register value."
    )

    def words(self, value: object) -> list[int]:
        if self.values is not None:
            if str(value) not in self.values:
                raise ValueError(f"{self.param} {value!r} has no register value in this map")
            return self.encode_raw(self.values[str(value)])
        if not isinstance(value, int | float):
            raise ValueError(f"{self.param} {value!r} is not a number")
        return self.encode_raw(value / self.scale)


class RegisterMap(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(description="The model's name: the file name without .toml.")
    title: str = Field(description="Vendor and product, as an installer reads it on the device.")
    source: str = Field(min_length=1, description="The vendor document the addresses come from.")
    max_registers: int = Field(MODBUS_MAX_READ, ge=1, le=MODBUS_MAX_READ)
    max_gap: int = Field(0, ge=0, le=MODBUS_MAX_READ - 2)
    registers: list[Register] = Field(default_factory=list)
    commands: dict[str, Write] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _distinct_fields(self) -> RegisterMap:
        seen: set[str] = set()
        for reg in self.registers:
            if reg.field in seen:
                raise ValueError(f"field {reg.field} is mapped twice")
            seen.add(reg.field)
        return self

    def check_against(self, device_type: type[DeviceType]) -> None:
        """Refuse fields, units, coded values and commands the device type's contract lacks."""
        fields = device_type.reading_model.model_fields
        for reg in self.registers:
            info = fields.get(reg.field)
            if info is None or reg.field in ("ts", "seq"):
                known = ", ".join(f for f in fields if f not in ("ts", "seq"))
                raise MapError(f"{reg.field} is not a {device_type.name} field (known: {known})")
            allowed = _literal_values(info.annotation)
            if allowed:
                bad = sorted(set((reg.values or {}).values()) - set(allowed))
                if reg.values is None or bad:
                    raise MapError(
                        f"{reg.field} takes one of {', '.join(allowed)}: give the register's "
                        f'codes as values = {{ 0 = "{allowed[0]}", ... }}'
                        + (f" (not {', '.join(bad)})" if bad else "")
                    )
                continue
            unit = contract_unit(device_type, reg.field)
            if reg.unit != unit:
                raise MapError(
                    f"{reg.field} is in {unit!r} in the contract, the map says {reg.unit!r}: "
                    "set scale so the value comes out in the contract's unit, and unit to it"
                )
        actions = _command_params(device_type)
        for action, write in self.commands.items():
            if action not in actions:
                raise MapError(
                    f"commands.{action}: a {device_type.name} takes {', '.join(sorted(actions))}"
                )
            if write.param not in actions[action]:
                raise MapError(
                    f"commands.{action}.param: {write.param!r} is not one of "
                    f"{', '.join(actions[action])}"
                )


def contract_unit(device_type: type[DeviceType], field: str) -> str | None:
    """The unit the contract gives a reading field (``measure(...)``), if any."""
    extra = device_type.reading_model.model_fields[field].json_schema_extra
    return str(extra["unit"]) if isinstance(extra, dict) and "unit" in extra else None


def _literal_values(annotation: Any) -> list[str]:
    if typing.get_origin(annotation) is Literal:
        return [str(v) for v in typing.get_args(annotation)]
    return []


def _command_params(device_type: type[DeviceType]) -> dict[str, list[str]]:
    """Each action the device type takes, with its parameters."""
    union = typing.get_args(device_type.command_model)[0]
    out: dict[str, list[str]] = {}
    for cmd in typing.get_args(union) or (union,):
        (action,) = typing.get_args(cmd.model_fields["action"].annotation)
        out[action] = [f for f in cmd.model_fields if f not in ("v", "id", "action")]
    return out


def find_map(model: str, maps_dir: Path | None = None) -> Path:
    """The file of ``model``: a path to a .toml, or a name in ``maps_dir`` or the shipped maps."""
    if model.endswith(".toml"):
        return Path(model)
    dirs = [d for d in (maps_dir, SHIPPED_MAPS) if d is not None]
    for directory in dirs:
        path = directory / f"{model}.toml"
        if path.is_file():
            return path
    known = sorted({p.stem for d in dirs if d.is_dir() for p in d.glob("*.toml")})
    raise MapError(
        f"no register map {model!r} in {', '.join(map(str, dirs))} "
        f"(known: {', '.join(known) or 'none'}); write one (docs/edge.md) or give a path"
    )


@functools.cache
def load_map(path: Path) -> RegisterMap:
    """The map in ``path``, validated; MapError names the file and what is wrong in it."""
    try:
        data = tomllib.loads(path.read_text())
        return RegisterMap.model_validate(data)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise MapError(f"cannot read register map {path}: {exc}") from None
    except ValidationError as exc:
        raise MapError(f"register map {path}: {describe(exc)}") from None


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: ``count`` registers from ``start``, holding the ``registers``."""

    function: Function
    start: int
    count: int
    registers: tuple[Register, ...]

    def values(self, words: typing.Sequence[int]) -> dict[str, float | str]:
        out = {}
        for reg in self.registers:
            offset = reg.address - self.start
            out[reg.field] = reg.value(words[offset : offset + reg.size])
        return out


def plan(registers: typing.Iterable[Register], max_registers: int, max_gap: int) -> list[Block]:
    """The fewest requests that read every register: one per run of registers of the same
    function whose span fits ``max_registers`` and whose holes are at most ``max_gap`` long."""
    blocks: list[Block] = []
    for function in ("holding", "input"):
        regs = sorted((r for r in registers if r.function == function), key=lambda r: r.address)
        group: list[Register] = []
        end = 0  # one past the last register of the group
        for reg in regs:
            reg_end = reg.address + reg.size
            if group and (
                reg.address - end > max_gap or max(end, reg_end) - group[0].address > max_registers
            ):
                blocks.append(_block(group, end))
                group = []
            end = max(end, reg_end) if group else reg_end
            group.append(reg)
        if group:
            blocks.append(_block(group, end))
    return blocks


def _block(group: list[Register], end: int) -> Block:
    start = group[0].address
    return Block(group[0].function, start, end - start, tuple(group))
