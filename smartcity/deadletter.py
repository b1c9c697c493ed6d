"""Refused input as a dead-letter point: why, where from, and the raw payload cut to a bound.

The ingester refuses MQTT messages, the OCPP gateway (``smartcity ocpp``) OCPP frames; both
keep the same record in the ``deadletter`` measurement (names in :mod:`smartcity.storage`).
"""

from __future__ import annotations

from smartcity.lineprotocol import line
from smartcity.storage import DEADLETTER_FIELDS, DEADLETTER_MEASUREMENT, DEADLETTER_TAGS

#: The most of a refused payload a dead-letter record keeps (both the InfluxDB point and the
#: MQTT message). Kept whole, a 256 KiB payload of control characters JSON-escapes to 1.5 MB,
#: over the broker's 1 MiB packet limit: the broker would drop the ingester's connection.
DEADLETTER_PAYLOAD_BYTES = 16_384
#: The most of a topic or a reason a dead-letter record keeps (a valid topic is far shorter;
#: a reason can quote a hostile field name in full).
DEADLETTER_TEXT_CHARS = 1024


def cut_payload(payload: bytes) -> bytes:
    """The part of a refused payload a dead-letter keeps: at most ``DEADLETTER_PAYLOAD_BYTES``,
    never ending inside a UTF-8 character (so a text payload stays text)."""
    end = DEADLETTER_PAYLOAD_BYTES
    if len(payload) <= end:
        return payload
    # the first byte left out continues a character begun before it: leave that character out
    for _ in range(3):
        if payload[end] & 0xC0 != 0x80:
            break
        end -= 1
    return payload[:end]


def cut_text(text: str) -> str:
    """A topic or reason, cut to ``DEADLETTER_TEXT_CHARS`` with an ellipsis saying so."""
    if len(text) <= DEADLETTER_TEXT_CHARS:
        return text
    return text[: DEADLETTER_TEXT_CHARS - 1] + "…"


def deadletter_line(
    topic: str, payload: bytes, code: str, reason: str, device_type: str | None, stamp_ns: int
) -> str:
    """A refused message as a point: why, where from, and the raw payload (cut to a bound)."""
    kept = cut_payload(payload)
    tags = (code, device_type or "unknown")
    fields = (  # in the order of DEADLETTER_FIELDS
        cut_text(reason),
        cut_text(topic),
        kept.decode("utf-8", errors="backslashreplace"),
        len(payload),
        len(kept) < len(payload),
    )
    return line(
        DEADLETTER_MEASUREMENT,
        dict(zip(DEADLETTER_TAGS, tags, strict=True)),
        dict(zip(DEADLETTER_FIELDS, fields, strict=True)),
        stamp_ns,
    )
