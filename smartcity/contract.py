"""The one contract between devices and the platform: topic scheme, envelopes, and how to decode.

Edge agents, simulators, the ingester and the API all import this module; ``docs/protocol.md``
documents it. Topics are ``smartcity/v1/{city}/{device_type}/{device_id}/{channel}``: city, type
and id are whole levels so a broker ACL can confine a device to ``.../{its id}/#``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, NamedTuple, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from smartcity.devices import DEVICE_TYPES, DeviceType, Event, Reading
from smartcity.devices.base import STRICT, Command, SchemaVersion, check_device_clock

ROOT = "smartcity"
VERSION = "v1"
SCHEMA_VERSION = 1
DEFAULT_CITY = "cremona"
#: Largest payload accepted; a bigger one is dead-lettered unparsed (a full backlog batch of
#: 1,000 readings is well under it).
MAX_PAYLOAD_BYTES = 256 * 1024
#: Most readings or events one message may carry.
MAX_BATCH = 1000

DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
#: A zone name: a word character, then word characters, spaces and ``.'()-``, 64 at most.
#: The length is a separate ``max_length``: the Rust regex engine pydantic uses compiles the
#: bounded Unicode form (``{0,63}``) into ~7 MB per process, which an edge controller cannot spare.
ZONE_PATTERN = r"^\w[\w .'()-]*$"
ZONE_MAX_LENGTH = 64
CITY_PATTERN = r"^[a-z0-9][a-z0-9-]{0,31}$"
_DEVICE_ID_RE = re.compile(DEVICE_ID_PATTERN)
_CITY_RE = re.compile(CITY_PATTERN)

Channel = Literal["telemetry", "events", "status", "health", "cmd", "cmd_result"]
CHANNELS: tuple[str, ...] = ("telemetry", "events", "status", "health", "cmd", "cmd_result")
#: Channels devices publish and the ingester stores (a ``cmd_result`` as the command's state).
INGESTED_CHANNELS: tuple[str, ...] = ("telemetry", "events", "status", "health", "cmd_result")
DEADLETTER_TOPIC = f"{ROOT}/{VERSION}/deadletter"

Zone = str
R = TypeVar("R", bound=Reading)
E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class Topic:
    city: str
    device_type: str
    device_id: str
    channel: str

    def __str__(self) -> str:
        return "/".join((ROOT, VERSION, self.city, self.device_type, self.device_id, self.channel))


def topic(device_type: str, device_id: str, channel: Channel, city: str = DEFAULT_CITY) -> str:
    """The topic a device publishes ``channel`` on (or, for ``cmd``, listens on)."""
    return str(Topic(city, device_type, device_id, channel))


def subscription(channel: str, city: str = "+") -> str:
    """The filter for one channel of every device in ``city`` (``+`` = all cities)."""
    return f"{ROOT}/{VERSION}/{city}/+/+/{channel}"


class InvalidMessage(Exception):
    """A message the platform refuses, with a short machine ``code`` and a human ``reason``."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


@functools.lru_cache(maxsize=100_000)
def parse_topic(name: str) -> Topic:
    """The levels of a device topic (cached: a city has a bounded set of topics)."""
    parts = name.split("/")
    if len(parts) != 6 or parts[0] != ROOT:
        raise InvalidMessage(
            "bad_topic", f"topic must be {ROOT}/{VERSION}/<city>/<type>/<id>/<channel>"
        )
    _, version, city, device_type, device_id, channel = parts
    if version != VERSION:
        raise InvalidMessage("bad_version", f"topic version {version!r} is not {VERSION!r}")
    if not _CITY_RE.match(city):
        raise InvalidMessage("bad_topic", f"city level must match {CITY_PATTERN}")
    if device_type not in DEVICE_TYPES:
        raise InvalidMessage(
            "unknown_device_type",
            f"device type {device_type!r} is not one of {', '.join(sorted(DEVICE_TYPES))}",
        )
    if not _DEVICE_ID_RE.match(device_id):
        raise InvalidMessage("bad_device_id", f"device id must match {DEVICE_ID_PATTERN}")
    if channel not in CHANNELS:
        raise InvalidMessage("bad_topic", f"channel {channel!r} is not one of {CHANNELS}")
    return Topic(city, device_type, device_id, channel)


class Telemetry(BaseModel, Generic[R]):
    """A batch of readings from one device (one reading is a batch of one)."""

    model_config = STRICT

    v: SchemaVersion = Field(description="Schema version of the payload.")
    zone: str | None = Field(
        None, pattern=ZONE_PATTERN, max_length=ZONE_MAX_LENGTH, description="City zone (quartiere)."
    )
    readings: list[R] = Field(min_length=1, max_length=MAX_BATCH)


class Events(BaseModel, Generic[E]):
    """A batch of events from one device."""

    model_config = STRICT

    v: SchemaVersion
    zone: str | None = Field(None, pattern=ZONE_PATTERN, max_length=ZONE_MAX_LENGTH)
    events: list[E] = Field(min_length=1, max_length=MAX_BATCH)


class Location(BaseModel):
    model_config = STRICT

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class Status(BaseModel):
    """Retained per device: ``online`` on connect, ``offline`` from the Last Will."""

    model_config = STRICT

    v: SchemaVersion
    state: Literal["online", "offline"]
    ts: AwareDatetime | None = Field(None, description="Absent in a Last Will (set in advance).")
    zone: str | None = Field(None, pattern=ZONE_PATTERN, max_length=ZONE_MAX_LENGTH)
    location: Location | None = None
    firmware: str | None = Field(
        None, min_length=1, max_length=64, description="Omitted when unknown; never empty."
    )

    @field_validator("ts")
    @classmethod
    def _plausible_clock(cls, ts: datetime | None) -> datetime | None:
        return None if ts is None else check_device_clock(ts)


class Health(BaseModel):
    """An edge agent's periodic heartbeat."""

    model_config = STRICT

    v: SchemaVersion
    ts: AwareDatetime
    zone: str | None = Field(None, pattern=ZONE_PATTERN, max_length=ZONE_MAX_LENGTH)
    version: str = Field(max_length=64)
    uptime: float = Field(ge=0, description="Seconds since the agent started.")
    outboxDepth: int = Field(ge=0, description="Readings waiting on disk to be published.")
    dropped: int = Field(ge=0, description="Readings dropped because the outbox was full.")
    readErrors: int | None = Field(
        None,
        ge=0,
        description="Reads of the device that failed since the agent started (a timeout, a "
        "Modbus exception code); lastError says why. Absent from agents older than it.",
    )
    lastError: str | None = Field(None, max_length=512)
    # LoRaWAN devices (``smartcity lorawan`` reports for them): the radio of the last uplink
    rssi: float | None = Field(None, ge=-200, le=50, description="dBm, best gateway.")
    snr: float | None = Field(None, ge=-50, le=50, description="dB, best gateway.")
    gatewayId: str | None = Field(None, pattern=r"^[0-9a-f]{16}$", description="Best gateway.")
    spreadingFactor: int | None = Field(None, ge=5, le=12, description="LoRa SF of the uplink.")
    batteryLevel: float | None = Field(
        None, ge=0, le=1, description="From the network server's device status, 0 to 1."
    )

    @field_validator("ts")
    @classmethod
    def _plausible_clock(cls, ts: datetime) -> datetime:
        return check_device_clock(ts)


class CommandResult(BaseModel):
    """A device's answer to one command, on its ``cmd_result`` topic."""

    model_config = STRICT

    v: SchemaVersion
    ts: AwareDatetime = Field(description="When the device handled the command.")
    id: str | None = Field(
        None, max_length=64, description="The command's id; absent if the command had none."
    )
    status: Literal["accepted", "rejected"]
    reason: str | None = Field(None, max_length=512, description="Why it was rejected.")


# The two adapters below parametrise a generic pydantic model with a class known only at runtime
# (pydantic's documented generic models); mypy reads ``Telemetry[...]`` as a type expression,
# where a variable is not allowed, hence their ignores.


@functools.cache
def telemetry_adapter(device_type: str) -> TypeAdapter[Any]:
    reading = DEVICE_TYPES[device_type].reading_model
    return TypeAdapter(Telemetry[reading])  # type: ignore[valid-type]


@functools.cache
def events_adapter(device_type: str) -> TypeAdapter[Any]:
    event = DEVICE_TYPES[device_type].event_model
    return TypeAdapter(Events[event])  # type: ignore[valid-type]


@functools.cache
def command_adapter(device_type: str) -> TypeAdapter[Any]:
    return TypeAdapter(DEVICE_TYPES[device_type].command_model)


def decode_command(device_type: str, payload: bytes | bytearray) -> Command:
    """Validate a command for a device of ``device_type``, or raise :class:`InvalidMessage`."""
    _check_size(payload)
    try:
        command: Command = command_adapter(device_type).validate_json(payload)
    except ValidationError as exc:
        raise InvalidMessage(_error_code(exc), describe(exc)) from None
    return command


_STATUS = TypeAdapter(Status)
_HEALTH = TypeAdapter(Health)
_RESULT = TypeAdapter(CommandResult)


class Message(NamedTuple):
    """A decoded, valid message and where it came from (a tuple: made for every message)."""

    topic: Topic
    body: Telemetry[Any] | Events[Any] | Status | Health | CommandResult

    @property
    def device(self) -> type[DeviceType]:
        return DEVICE_TYPES[self.topic.device_type]


def _check_size(payload: bytes | bytearray) -> None:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise InvalidMessage(
            "too_large", f"payload is {len(payload)} bytes, the limit is {MAX_PAYLOAD_BYTES}"
        )


@functools.cache
def _body_adapter(device_type: str, channel: str) -> TypeAdapter[Any]:
    if channel == "telemetry":
        return telemetry_adapter(device_type)
    if channel == "events":
        return events_adapter(device_type)
    if channel == "status":
        return _STATUS
    if channel == "health":
        return _HEALTH
    if channel == "cmd_result":
        return _RESULT
    raise InvalidMessage("bad_topic", f"channel {channel!r} is not published by devices")


def decode(topic_name: str, payload: bytes) -> Message:
    """Validate a message from a device, or raise :class:`InvalidMessage` saying why."""
    _check_size(payload)
    where = parse_topic(topic_name)
    validator = _body_adapter(where.device_type, where.channel).validator
    try:
        body = validator.validate_json(payload)
    except ValidationError as exc:
        raise InvalidMessage(_error_code(exc), describe(exc)) from None
    return Message(where, body)


def _error_code(exc: ValidationError) -> str:
    return "bad_json" if any(e["type"] == "json_invalid" for e in exc.errors()) else "invalid"


def describe(exc: ValidationError, limit: int = 5) -> str:
    """A one-line reason naming each bad field, e.g. ``readings.0.fillingLevel: ... (got 1.7)``."""
    parts = []
    for err in exc.errors(include_url=False)[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        got = err.get("input")
        shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r:.40})"
        parts.append(f"{where}: {err['msg']}{shown}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def encode_telemetry(readings: list[Reading], zone: str | None = None) -> bytes:
    """The payload for a batch of readings of one device."""
    return _JSON.dump_json(
        {"v": SCHEMA_VERSION, "zone": zone, "readings": readings}, exclude_none=True
    )


def encode_events(events: list[Event], zone: str | None = None) -> bytes:
    """The payload for a batch of events of one device."""
    return _JSON.dump_json({"v": SCHEMA_VERSION, "zone": zone, "events": events}, exclude_none=True)


def encode_stored(
    channel: Literal["telemetry", "events"], items: Sequence[bytes], zone: str | None = None
) -> bytes:
    """A telemetry or events payload from readings or events already encoded one by one.

    An edge outbox keeps each reading as JSON and replays thousands a second; joining the stored
    bytes gives the message :func:`encode_telemetry` would, without decoding them again.
    """
    key = b"readings" if channel == "telemetry" else b"events"
    zone_part = b'"zone":' + json.dumps(zone, ensure_ascii=False).encode() + b"," if zone else b""
    return b'{"v":%d,%s"%s":[%s]}' % (SCHEMA_VERSION, zone_part, key, b",".join(items))


def encode(model: BaseModel) -> bytes:
    """The payload for a status, health or command message."""
    return model.model_dump_json(exclude_none=True).encode()


_JSON: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])
