"""LoRaWAN sensor models as data: how a model's payload bytes become contract fields, and back.

A profile is a TOML file in this package (one per sensor model, ``<name>.toml``), written from
the vendor's published payload document. It declares:

* ``layout``: ``fixed`` (each value at a byte offset, the frame of one exact length) or ``tlv``
  (Milesight style: a channel byte, a type byte, then the value; channels in any order);
* ``[[value]]``: the raw values with their byte type, scale, unit and, for enumerations, their
  names; raw readings that mean "no measurement" (``invalid``) refuse the frame;
* ``[contract]``: which contract fields the profile fills, from which raw value and how
  (``scale``, or ``linear = [a, b]``: a -> 0, b -> 1, clamped; ``map`` for names; ``const``);
* ``[object]``: when ChirpStack already decoded the payload with the vendor's codec, which key
  of its ``object`` holds each raw value (the same contract rules then apply);
* ``[[downlink]]``: how a contract command becomes downlink bytes on an fPort.

The edge bridge (``smartcity lorawan``) decodes with it and the simulators encode with it, so
both live here in the core.
"""

from __future__ import annotations

import functools
import struct
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

#: struct codes of the byte types a profile may name (byte order comes from the profile).
_TYPES = {"u8": "B", "i8": "b", "u16": "H", "i16": "h", "u32": "I", "i32": "i", "u24": ""}


class ProfileError(ValueError):
    """A payload this profile cannot decode, with a short ``code`` and the reason."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Value:
    """One raw value of the payload."""

    name: str
    type: str
    unit: str = ""
    scale: float = 1.0
    offset: int | None = None  # fixed layout: byte offset
    channel: int | None = None  # tlv layout: channel and type bytes
    kind: int | None = None
    mask: int | None = None
    values: Mapping[int, str] = field(default_factory=dict)
    invalid: tuple[int, ...] = ()

    @property
    def size(self) -> int:
        return 3 if self.type == "u24" else struct.calcsize(_TYPES[self.type])

    def decode(self, raw: bytes, order: str) -> float | str:
        if self.type == "u24":  # no struct code for three bytes
            number = int.from_bytes(raw, "big" if order == ">" else "little")
        else:
            (number,) = struct.unpack(order + _TYPES[self.type], raw)
        if number in self.invalid:
            raise ProfileError("out_of_range", f"{self.name}: the sensor reports no measurement")
        if self.mask is not None:
            number &= self.mask
        if self.values:
            if number not in self.values:
                raise ProfileError("out_of_range", f"{self.name}: unknown value {number}")
            return self.values[number]
        return round(number * self.scale, 6)

    def encode(self, value: float | str, order: str) -> bytes:
        if self.values:
            number = {v: k for k, v in self.values.items()}[str(value)]
        else:
            number = round(float(value) / self.scale)
        try:
            if self.type == "u24":
                return number.to_bytes(3, "big" if order == ">" else "little")
            return struct.pack(order + _TYPES[self.type], number)
        except (struct.error, OverflowError):
            why = f"{self.name}: {value} does not fit {self.type}"
            raise ProfileError("out_of_range", why) from None


@dataclass(frozen=True)
class Rule:
    """How one contract field is made from a raw value."""

    target: str
    source: str | None = None
    scale: float = 1.0
    linear: tuple[float, float] | None = None
    map: Mapping[str, str] = field(default_factory=dict)
    const: Any = None

    def apply(self, raw: Mapping[str, float | str]) -> Any:
        if self.source is None:
            return self.const
        value = raw[self.source]
        if self.map:
            if str(value) not in self.map:
                raise ProfileError("out_of_range", f"{self.source}: no mapping for {value!r}")
            return self.map[str(value)]
        if isinstance(value, str):
            raise ProfileError("out_of_range", f"{self.source}: {value!r} is not a number")
        if self.linear is not None:
            a, b = self.linear
            return min(1.0, max(0.0, (value - a) / (b - a)))
        return float(value * self.scale)

    def invert(self, target: Any) -> float | str:
        """The raw value that gives ``target`` (the simulator's direction); a named value the
        sensor cannot report (a bin ``burning`` for a tilt sensor) becomes its first one."""
        if self.map:
            back = {v: k for k, v in self.map.items()}
            return back.get(str(target), next(iter(self.map)))
        if self.linear is not None:
            a, b = self.linear
            return a + float(target) * (b - a)
        return float(target) / self.scale


@dataclass(frozen=True)
class Downlink:
    """A contract command as bytes: a fixed prefix, then parameters."""

    action: str
    fport: int
    prefix: bytes
    params: tuple[tuple[str, Value], ...]


@dataclass(frozen=True)
class Profile:
    name: str
    vendor: str
    model: str
    device_type: str
    documents: tuple[str, ...]
    layout: Literal["fixed", "tlv"]
    byte_order: str
    fports: tuple[int, ...]
    length: int | None
    values: tuple[Value, ...]
    rules: tuple[Rule, ...]
    object_keys: Mapping[str, str]
    skip_channels: tuple[int, ...]
    downlinks: Mapping[str, Downlink]

    @property
    def fields(self) -> tuple[str, ...]:
        """The contract fields this profile fills."""
        return tuple(rule.target for rule in self.rules)

    def raw_values(self, fport: int, data: bytes) -> dict[str, float | str]:
        """The raw values of an uplink, or :class:`ProfileError` saying what is wrong."""
        if fport not in self.fports:
            raise ProfileError(
                "unknown_fport", f"fPort {fport} is not one of {list(self.fports)} ({self.name})"
            )
        if self.layout == "fixed":
            return self._fixed(data)
        return self._tlv(data)

    def _fixed(self, data: bytes) -> dict[str, float | str]:
        if len(data) != self.length:
            raise ProfileError(
                "wrong_length", f"{len(data)} bytes, {self.name} sends {self.length}"
            )
        order = self.byte_order
        return {
            v.name: v.decode(data[v.offset : v.offset + v.size], order)  # type: ignore[operator]
            for v in self.values
        }

    def _tlv(self, data: bytes) -> dict[str, float | str]:
        by_key = {(v.channel, v.kind): v for v in self.values}
        out: dict[str, float | str] = {}
        i = 0
        while i < len(data):
            if i + 2 > len(data):
                raise ProfileError("wrong_length", f"frame ends inside a channel header at {i}")
            channel, kind = data[i], data[i + 1]
            value = by_key.get((channel, kind))
            if value is None:
                if channel in self.skip_channels:  # device information, no reading
                    return {}
                raise ProfileError(
                    "undecodable", f"channel 0x{channel:02x} type 0x{kind:02x} at byte {i}"
                )
            end = i + 2 + value.size
            if end > len(data):
                raise ProfileError("wrong_length", f"{value.name} cut short at byte {i}")
            out[value.name] = value.decode(data[i + 2 : end], self.byte_order)
            i = end
        if not out:
            raise ProfileError("wrong_length", "empty payload")
        return out

    def contract_fields(self, raw: Mapping[str, float | str]) -> dict[str, Any]:
        """The contract fields from raw values; every value the rules need must be there."""
        missing = sorted({r.source for r in self.rules if r.source} - raw.keys())
        if missing:
            raise ProfileError("incomplete", f"the frame lacks {', '.join(missing)}")
        return {rule.target: rule.apply(raw) for rule in self.rules}

    def from_object(self, obj: Mapping[str, Any]) -> dict[str, float | str]:
        """Raw values from ChirpStack's decoded ``object`` (the vendor codec's keys)."""
        raw: dict[str, float | str] = {}
        for name, key in self.object_keys.items():
            if key in obj:
                got = obj[key]
                if isinstance(got, bool) or not isinstance(got, int | float | str):
                    raise ProfileError("invalid", f"object.{key}: {got!r} is not a value")
                raw[name] = got
        return raw

    def encode_uplink(self, contract: Mapping[str, Any]) -> tuple[int, bytes]:
        """The fPort and bytes a device of this model would send for these contract values."""
        raw: dict[str, float | str] = {}
        for rule in self.rules:
            if rule.source is not None:
                raw[rule.source] = rule.invert(contract[rule.target])
        order = self.byte_order
        if self.layout == "fixed":
            buf = bytearray(self.length or 0)
            for v in self.values:
                assert v.offset is not None
                buf[v.offset : v.offset + v.size] = v.encode(raw.get(v.name, 0), order)
            return self.fports[0], bytes(buf)
        parts = [
            bytes((v.channel or 0, v.kind or 0)) + v.encode(raw[v.name], order)
            for v in self.values
            if v.name in raw
        ]
        return self.fports[0], b"".join(parts)

    def encode_downlink(self, action: str, params: Mapping[str, Any]) -> tuple[int, bytes]:
        """The fPort and bytes of a command, or :class:`ProfileError` if the model has none."""
        downlink = self.downlinks.get(action)
        if downlink is None:
            raise ProfileError("unsupported", f"{self.model} takes no {action!r} downlink")
        body = b"".join(v.encode(params[name], self.byte_order) for name, v in downlink.params)
        return downlink.fport, downlink.prefix + body


def _value(spec: Mapping[str, Any]) -> Value:
    if spec["type"] not in _TYPES:
        raise ValueError(f"value {spec['name']}: type must be one of {', '.join(_TYPES)}")
    return Value(
        name=spec["name"],
        type=spec["type"],
        unit=spec.get("unit", ""),
        scale=float(spec.get("scale", 1.0)),
        offset=spec.get("offset"),
        channel=spec.get("channel"),
        kind=spec.get("kind"),
        mask=spec.get("mask"),
        values={int(k): v for k, v in spec.get("values", {}).items()},
        invalid=tuple(spec.get("invalid", ())),
    )


def parse(text: str, name: str) -> Profile:
    """A profile from TOML text; ``ValueError`` names what is wrong in it."""
    doc = tomllib.loads(text)
    rules = []
    for target, spec in doc.get("contract", {}).items():
        linear = spec.get("linear")
        rules.append(
            Rule(
                target=target,
                source=spec.get("from"),
                scale=float(spec.get("scale", 1.0)),
                linear=(float(linear[0]), float(linear[1])) if linear else None,
                map=dict(spec.get("map", {})),
                const=spec.get("const"),
            )
        )
    downlinks = {
        d["action"]: Downlink(
            action=d["action"],
            fport=int(d["fport"]),
            prefix=bytes.fromhex(d.get("prefix", "")),
            params=tuple((p["name"], _value(p)) for p in d.get("param", ())),
        )
        for d in doc.get("downlink", ())
    }
    layout = doc["layout"]
    if layout not in ("fixed", "tlv"):
        raise ValueError(f"profile {name}: layout must be fixed or tlv, not {layout!r}")
    return Profile(
        name=name,
        vendor=doc["vendor"],
        model=doc["model"],
        device_type=doc["device_type"],
        documents=tuple(doc["documents"]),
        layout=layout,
        byte_order={"big": ">", "little": "<"}[doc["byte_order"]],
        fports=tuple(doc["fports"]),
        length=doc.get("length"),
        values=tuple(_value(v) for v in doc["value"]),
        rules=tuple(rules),
        object_keys=dict(doc.get("object", {})),
        skip_channels=tuple(doc.get("skip_channels", ())),
        downlinks=downlinks,
    )


def names() -> list[str]:
    """The profiles shipped with the platform."""
    here = resources.files(__name__)
    return sorted(p.name[:-5] for p in here.iterdir() if p.name.endswith(".toml"))


@functools.cache
def load(name: str) -> Profile:
    """A shipped profile by name; ``KeyError`` lists the known ones."""
    if name not in names():
        raise KeyError(f"no LoRaWAN profile {name!r}; known: {', '.join(names())}")
    text = resources.files(__name__).joinpath(f"{name}.toml").read_text(encoding="utf-8")
    return parse(text, name)
