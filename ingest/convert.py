"""Decoded messages to line protocol, and refused messages to dead-letter points.

Every point carries the tags ``device_id``, ``device_type`` and ``zone``; what else a device type
stores comes from its module in ``smartcity.devices``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from smartcity.commands import result_line
from smartcity.contract import (
    CommandResult,
    Events,
    Health,
    InvalidMessage,
    Message,
    Status,
    Telemetry,
)
from smartcity.deadletter import DEADLETTER_PAYLOAD_BYTES as DEADLETTER_PAYLOAD_BYTES
from smartcity.deadletter import DEADLETTER_TEXT_CHARS as DEADLETTER_TEXT_CHARS
from smartcity.deadletter import cut_payload as cut_payload
from smartcity.deadletter import cut_text as cut_text
from smartcity.deadletter import deadletter_line as deadletter_line
from smartcity.devices.base import Row, point_time_ns
from smartcity.lineprotocol import escape_measurement, line, model_encoder, tag_text
from smartcity.storage import (
    HEALTH_MEASUREMENT,
    STATUS_MEASUREMENT,
    UNKNOWN_ZONE,
    UNREGISTERED_MEASUREMENT,
)

if TYPE_CHECKING:
    from ingest.registry import ZoneLookup

#: What an MQTT dead-letter can take at most, far below the broker's 1 MiB packet limit: JSON
#: escaping turns each kept byte into 6 characters at worst (``\u0001``) and each character of
#: the topic and reason into 12 (an astral character as two ``\uXXXX``), plus a few fields.
DEADLETTER_MAX_BYTES = 128 * 1024


def message_lines(msg: Message, received_ns: int, zones: ZoneLookup | None = None) -> list[str]:
    """The points a valid message becomes; with a registry, tagged with the registered zone.

    Raises :class:`InvalidMessage` (``type_mismatch``) for a registered device publishing under
    another device type: it would be stored, and raise alerts, as that type."""
    body = msg.body
    where = msg.topic
    # a command result names no zone: the registry's, else "unknown"
    zone = None if isinstance(body, CommandResult) else body.zone
    registered = zones is None
    if zones is not None and (known := zones.lookup(where.device_id)) is not None:
        if known.device_type != where.device_type:
            raise InvalidMessage(
                "type_mismatch",
                f"device {where.device_id!r} is registered as a {known.device_type}, "
                f"not a {where.device_type}",
            )
        zone, registered = known.zone, True
    common = (  # in sorted order, as tags go to InfluxDB
        ("device_id", where.device_id),
        ("device_type", where.device_type),
        ("zone", zone or UNKNOWN_ZONE),
    )
    lines = _points(msg, common, received_ns)
    if not registered:
        lines.append(line(UNREGISTERED_MEASUREMENT, dict(common), {"count": 1}, received_ns))
    return lines


def _points(msg: Message, common: tuple[tuple[str, str], ...], received_ns: int) -> list[str]:
    body = msg.body
    device = msg.device
    if isinstance(body, Telemetry):
        return [row_line(r, common) for x in body.readings for r in device.reading_rows(x)]
    if isinstance(body, Events):
        return [row_line(r, common) for e in body.events for r in device.event_rows(e)]
    if isinstance(body, Status):
        fields: dict[str, str | int | float] = {
            "state": body.state,
            "online": int(body.state == "online"),
        }
        if body.location:
            fields |= {"lat": body.location.lat, "lon": body.location.lon}
        if body.firmware is not None:
            fields["firmware"] = body.firmware
        stamp = point_time_ns(body.ts) if body.ts else received_ns
        return [line(STATUS_MEASUREMENT, dict(common), fields, stamp)]
    if isinstance(body, CommandResult):
        tags = dict(common)
        return [result_line(tags["device_type"], tags["device_id"], tags["zone"], body)]
    assert isinstance(body, Health)
    encoded = model_encoder(Health, frozenset({"v", "ts", "zone"}))(body)
    return [f"{HEALTH_MEASUREMENT}{tag_text(common)} {encoded} {point_time_ns(body.ts)}"]


def row_line(row: Row, common: tuple[tuple[str, str], ...]) -> str:
    """A device row with the message's tags (device_id, device_type, zone) added."""
    return f"{series_key(row.measurement, common, row.tags)} {row.fields} {row.time_ns}"


@functools.lru_cache(maxsize=100_000)
def series_key(
    measurement: str, common: tuple[tuple[str, str], ...], own: tuple[tuple[str, str], ...]
) -> str:
    """``measurement,tag=value,...`` for one series; cached, as a city has a bounded number."""
    tags = tuple(sorted(common + own)) if own else common
    return escape_measurement(measurement) + tag_text(tags)


class DeadLetterClock:
    """Receive-time stamps that never repeat, so two refusals never overwrite each other."""

    def __init__(self) -> None:
        self.last = 0

    def __call__(self, _now: Callable[[], int] = time.time_ns) -> int:
        now = _now()
        self.last = now if now > self.last else self.last + 1
        return self.last
