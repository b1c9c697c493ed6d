"""The bridge's refusals as InfluxDB ``deadletter`` points, beside the ingester's own.

The MQTT copy on ``smartcity/v1/deadletter`` is for whoever watches; the InfluxDB point is the
record, which the pipeline board counts. Written by a thread of its own from a bounded queue, so
a slow or absent InfluxDB never holds up uplinks: when the queue is full, or a write fails, the
record is skipped with a warning (the MQTT copy and the bridge's counts remain).
"""

from __future__ import annotations

import base64
import logging
import queue
import threading
import time
import urllib.parse
import urllib.request

from smartcity.lineprotocol import line
from smartcity.settings import InfluxSettings
from smartcity.storage import DEADLETTER_FIELDS, DEADLETTER_MEASUREMENT, DEADLETTER_TAGS

log = logging.getLogger("smartcity.lorawan")

#: What a record keeps of the payload and of the topic or reason (the ingester's bounds).
PAYLOAD_BYTES = 16_384
TEXT_CHARS = 1024


def record(topic: str, payload: bytes, code: str, reason: str, stamp_ns: int) -> str:
    """The refusal as a line of the ``deadletter`` measurement (device type: ``unknown``,
    as a ChirpStack topic names none)."""
    kept = payload[:PAYLOAD_BYTES]
    try:
        text = kept.decode("utf-8")
    except UnicodeDecodeError:
        text = base64.b64encode(kept).decode()
    fields = (reason[:TEXT_CHARS], topic[:TEXT_CHARS], text, len(payload), len(kept) < len(payload))
    return line(
        DEADLETTER_MEASUREMENT,
        dict(zip(DEADLETTER_TAGS, (code, "unknown"), strict=True)),
        dict(zip(DEADLETTER_FIELDS, fields, strict=True)),
        stamp_ns,
    )


class DeadLetterStore:
    def __init__(self, settings: InfluxSettings, capacity: int = 1000) -> None:
        query = {"db": settings.influx_db, "precision": "ns"}
        if settings.influx_user:
            query |= {"u": settings.influx_user, "p": settings.influx_password or ""}
        self.url = f"{settings.influx_url}/write?{urllib.parse.urlencode(query)}"
        self.lines: queue.Queue[str] = queue.Queue(capacity)
        threading.Thread(target=self._write, name="deadletters", daemon=True).start()

    def add(self, topic: str, payload: bytes, code: str, reason: str) -> None:
        try:
            self.lines.put_nowait(record(topic, payload, code, reason, time.time_ns()))
        except queue.Full:
            log.warning("InfluxDB is behind: a dead-letter record was skipped (MQTT copy sent)")

    def _write(self) -> None:
        while True:
            body = self.lines.get().encode()
            try:
                with urllib.request.urlopen(self.url, body, timeout=10):
                    pass
            except Exception as exc:
                log.warning("could not store a dead-letter in InfluxDB (%s): skipped", exc)
