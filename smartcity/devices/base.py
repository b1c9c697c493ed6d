"""What every device type is made of: reading, event and command models, and how data is stored.

A device type is data (see ``streetlight.py``): its pydantic models carry names, units and ranges
once, and validation, line protocol, simulators, API and dashboards all read them from there.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, NamedTuple, get_args, get_origin

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from smartcity.kpis import Kpi
from smartcity.lineprotocol import model_encoder
from smartcity.storage import (
    EVENT_COUNT_FIELD as EVENT_COUNT_FIELD,  # re-exported: types import it here
)

#: Readings stamped more than this far ahead of the receiver's clock are rejected: a device whose
#: clock runs ahead would otherwise write points into the future that dashboards never show.
MAX_CLOCK_SKEW_S = 300.0
#: Anything stamped before this is a device whose clock was never set (1970 after a power cut).
EARLIEST_TS = datetime(2000, 1, 1, tzinfo=UTC)
_EARLIEST_S = EARLIEST_TS.timestamp()

STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)


def _integer_one(value: object) -> object:
    """Refuse ``true`` and ``1.0`` for the version: a Literal compares by ``==``, and in Python
    ``True == 1.0 == 1``, so strict mode alone lets them through."""
    if type(value) is not int:
        raise ValueError(f"must be the integer 1, not {type(value).__name__}")
    return value


#: The schema version every payload carries: exactly the JSON integer ``1``.
SchemaVersion = Annotated[Literal[1], BeforeValidator(_integer_one)]


def measure(unit: str, ge: float, le: float, description: str, *, counter: bool = False) -> Any:
    """A numeric reading with its unit and physical range, checked on every message.

    ``counter``: a meter's running total (lifetime energy), so rollups also keep how much it
    grew per window (its spread), which is what consumption KPIs add up.
    """
    extra: dict[str, Any] = {"unit": unit}
    if counter:
        extra["counter"] = True
    return Field(ge=ge, le=le, description=description, json_schema_extra=extra)


def optional_measure(unit: str, ge: float, le: float, description: str) -> Any:
    """A reading only some devices of a type measure: its unit and range, or absent."""
    return Field(None, ge=ge, le=le, description=description, json_schema_extra={"unit": unit})


class Reading(BaseModel):
    """One timestamped sample from one device; the fields of a subclass are the stored fields."""

    model_config = STRICT

    ts: AwareDatetime = Field(
        description="When the device took the reading (ISO 8601 with offset)."
    )
    seq: int = Field(
        ge=0,
        le=2**53,
        description="Per-device reading counter, +1 per reading; a jump reveals lost readings.",
    )

    @field_validator("ts")
    @classmethod
    def _plausible_clock(cls, ts: datetime) -> datetime:
        return check_device_clock(ts)


class Event(BaseModel):
    """Something that happened at a moment (a session started, a bin was emptied)."""

    model_config = STRICT
    #: Event attributes stored as tags (small closed sets only), mapped to their tag names.
    TAGS: ClassVar[dict[str, str]] = {"kind": "kind"}

    ts: AwareDatetime = Field(description="When it happened (ISO 8601 with offset).")

    @field_validator("ts")
    @classmethod
    def _plausible_clock(cls, ts: datetime) -> datetime:
        return check_device_clock(ts)


#: A command id: chosen by whoever sends the command, echoed in the device's result.
COMMAND_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


class Command(BaseModel):
    """An instruction for one device, on its ``cmd`` topic.

    A subclass per action adds ``action: Literal[...]`` and the action's parameters; each device
    type lists the subclasses it accepts in ``DeviceType.command_model``.
    """

    model_config = STRICT

    v: SchemaVersion = Field(description="Schema version of the payload.")
    id: str = Field(
        pattern=COMMAND_ID_PATTERN, description="Chosen by the sender; echoed in the result."
    )


def check_device_clock(ts: datetime) -> datetime:
    """Reject a timestamp from a device whose clock is unset or far ahead."""
    seconds = ts.timestamp()  # one conversion, then float comparisons: this runs per reading
    if seconds < _EARLIEST_S:
        raise ValueError("timestamp is before 2000-01-01: the device clock is not set")
    if seconds > time.time() + MAX_CLOCK_SKEW_S:
        raise ValueError(
            f"timestamp is more than {MAX_CLOCK_SKEW_S:.0f} s in the future: check the device clock"
        )
    return ts


class Row(NamedTuple):
    """One InfluxDB point of a device: measurement, encoded fields, time, and its own tags
    (the ingester adds ``device_id``, ``device_type`` and ``zone``). A tuple, as one is made
    for every reading stored."""

    measurement: str
    fields: str
    time_ns: int
    tags: tuple[tuple[str, str], ...] = ()


def point_time_ns(ts: datetime, seq: int | None = None) -> int:
    """The InfluxDB timestamp of a reading: device time to the millisecond, plus seq in ns.

    Two readings stamped in the same millisecond stay two points unless their seqs are a
    multiple of 10^6 apart (why that is the rule: docs/protocol.md), and a replayed reading (same
    ts, same seq) lands on the very same point, so redelivery is harmless.
    """
    ms = math.floor(ts.timestamp() * 1000)
    return ms * 1_000_000 + (seq % 1_000_000 if seq is not None else 0)


_TS = frozenset({"ts"})


class Stored(NamedTuple):
    """What one measurement of a device type holds, by kind, for its rollups: numeric gauges,
    counters (running totals), states (text or flags), or events (a ``count`` per point)."""

    measurement: str
    gauges: tuple[str, ...] = ()
    counters: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    events: bool = False


def stored_fields(model: type[BaseModel], skip: frozenset[str] = frozenset()) -> Stored:
    """A model's stored fields by kind (lists, the time and ``seq`` are not rolled up)."""
    gauges: list[str] = []
    counters: list[str] = []
    states: list[str] = []
    for name, info in model.model_fields.items():
        if name in skip or name in ("ts", "seq"):
            continue
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if info.annotation in (float, int):
            (counters if extra.get("counter") else gauges).append(name)
        elif get_origin(info.annotation) is not list:
            states.append(name)
    return Stored("", tuple(gauges), tuple(counters), tuple(states))


def union_members(annotation: Any) -> list[type[BaseModel]]:
    """The models of an ``Annotated[A | B, ...]`` (or a single model)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in get_args(annotation) for m in union_members(a)]


class DeviceType:
    """A device type: subclass it in one module and list it in ``smartcity.devices``."""

    #: Topic level and InfluxDB measurement name.
    name: ClassVar[str]
    #: The FIWARE Smart Data Models entity this type follows.
    fiware_type: ClassVar[str]
    title_it: ClassVar[str]
    title_en: ClassVar[str]
    reading_model: ClassVar[type[Reading]]
    event_model: ClassVar[Any]
    #: The commands this type accepts: ``Command`` subclasses, discriminated by ``action``.
    command_model: ClassVar[Any]
    #: How often a real device of this type reports, in seconds (simulators and offline alerts).
    report_interval_s: ClassVar[float]
    #: The type's KPIs, declared once (``smartcity.kpis``; set after the class, as they name
    #: its measurements). The API and the boards compute them from here.
    kpis: ClassVar[tuple[Kpi, ...]] = ()

    @classmethod
    def measurement(cls) -> str:
        return cls.name

    @classmethod
    def event_measurement(cls) -> str:
        return f"{cls.name}_event"

    @classmethod
    def stored(cls) -> list[Stored]:
        """The measurements this type writes and their fields by kind: the reading's own
        measurement and the events'. A type that writes more (``reading_rows`` overridden)
        adds them; rollups (``smartcity.retention``) are generated from this."""
        reading = stored_fields(cls.reading_model)._replace(measurement=cls.measurement())
        gauges: dict[str, None] = {}  # the numeric fields of every kind of event, in order
        for model in union_members(cls.event_model):
            tags = frozenset(getattr(model, "TAGS", {}))
            fields = stored_fields(model, tags)
            gauges.update(dict.fromkeys((*fields.gauges, *fields.counters)))
        return [reading, Stored(cls.event_measurement(), tuple(gauges), events=True)]

    @classmethod
    def reading_rows(cls, reading: Reading) -> Iterator[Row]:
        """The reading's own point (the only one that carries ``seq``), then derived points."""
        encode = model_encoder(type(reading), _TS)
        yield Row(cls.measurement(), encode(reading), point_time_ns(reading.ts, reading.seq))

    @classmethod
    def event_rows(cls, event: Event) -> Iterator[Row]:
        """An event becomes one point tagged with its kind and any ``TAGS`` it declares."""
        tag_names: dict[str, str] = getattr(event, "TAGS", {})
        tags = tuple(sorted((tag, str(getattr(event, name))) for name, tag in tag_names.items()))
        fields = model_encoder(type(event), frozenset({"ts", *tag_names}))(event)
        count = f"{EVENT_COUNT_FIELD}=1i"
        fields = f"{fields},{count}" if fields else count
        yield Row(cls.event_measurement(), fields, point_time_ns(event.ts), tags)
