"""Decoded messages to line protocol, and refused messages to dead-letter points.

Every point carries the tags ``device_id``, ``device_type`` and ``zone``; what else a device type
stores comes from its module in ``smartcity.devices``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from smartcity.contract import Events, Health, Message, Status, Telemetry
from smartcity.devices.base import Row, point_time_ns
from smartcity.lineprotocol import escape_measurement, line, model_encoder, tag_text

if TYPE_CHECKING:
    from ingest.registry import ZoneLookup

DEADLETTER_MEASUREMENT = "deadletter"
STATUS_MEASUREMENT = "device_status"
HEALTH_MEASUREMENT = "device_health"
#: One point (count=1) per message from a device the registry does not know.
UNREGISTERED_MEASUREMENT = "device_unregistered"
UNKNOWN_ZONE = "unknown"
#: InfluxDB 1.x refuses string fields over 64 KiB; the MQTT dead-letter keeps the whole payload.
DEADLETTER_PAYLOAD_CHARS = 16_384


def message_lines(msg: Message, received_ns: int, zones: ZoneLookup | None = None) -> list[str]:
    """The points a valid message becomes; with a registry, tagged with the registered zone."""
    body = msg.body
    where = msg.topic
    zone, registered = zones.zone(where.device_id, body.zone) if zones else (body.zone, True)
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
        fields = {"state": body.state, "online": int(body.state == "online")}
        if body.location:
            fields |= {"lat": body.location.lat, "lon": body.location.lon}
        if body.firmware is not None:
            fields["firmware"] = body.firmware
        stamp = point_time_ns(body.ts) if body.ts else received_ns
        return [line(STATUS_MEASUREMENT, dict(common), fields, stamp)]
    assert isinstance(body, Health)
    fields = model_encoder(Health, frozenset({"v", "ts", "zone"}))(body)
    return [f"{HEALTH_MEASUREMENT}{tag_text(common)} {fields} {point_time_ns(body.ts)}"]


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


def deadletter_line(
    topic: str, payload: bytes, code: str, reason: str, device_type: str | None, stamp_ns: int
) -> str:
    """A refused message as a point: why, where from, and the raw payload (truncated)."""
    text = payload.decode("utf-8", errors="backslashreplace")
    return line(
        DEADLETTER_MEASUREMENT,
        {"reason_code": code, "device_type": device_type or "unknown"},
        {
            "reason": reason,
            "topic": topic,
            "payload": text[:DEADLETTER_PAYLOAD_CHARS],
            "payload_bytes": len(payload),
        },
        stamp_ns,
    )
