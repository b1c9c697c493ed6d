"""The ingest loop: receive, validate, batch, write, and only then acknowledge.

Receiving and writing run as separate tasks joined by a bounded queue of batches, so a slow
InfluxDB never stalls the MQTT socket, and memory stays bounded: when the queue is full the
receive loop waits, the broker stops sending once our Receive Maximum of unacknowledged messages
is reached, and it keeps the rest in our persistent session. A message is acknowledged only
after the batch holding it (or its dead-letter point) is stored, so a crash at any moment loses
nothing: the broker redelivers, and a redelivered reading lands on the same InfluxDB point.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest import mqtt_ack
from ingest.convert import DeadLetterClock, deadletter_line, message_lines
from ingest.influx import InfluxUnavailable, InfluxWriter
from ingest.registry import registry_zones
from ingest.settings import IngestSettings
from smartcity.contract import (
    DEADLETTER_TOPIC,
    INGESTED_CHANNELS,
    InvalidMessage,
    decode,
    parse_topic,
    subscription,
)
from smartcity.lineprotocol import LineProtocolError
from smartcity.settings import mqtt_endpoint

log = logging.getLogger("smartcity.ingest")


@dataclass
class Batch:
    """Lines to write, and the deliveries to acknowledge once they are stored."""

    lines: list[str] = field(default_factory=list)
    acks: list[tuple[int, int, int]] = field(default_factory=list)  # (connection, mid, qos)
    deadletters: list[bytes] = field(default_factory=list)
    messages: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass
class Counters:
    received: int = 0
    points: int = 0
    invalid: int = 0
    written_batches: int = 0
    acked: int = 0


class Ingester:
    def __init__(self, settings: IngestSettings, worker: int = 0) -> None:
        self.settings = settings
        self.client_id = settings.client_id if worker == 0 else f"{settings.client_id}-{worker}"
        self.influx = InfluxWriter(settings)
        self.zones = registry_zones(settings)
        self.batch = Batch()
        self.pending: asyncio.Queue[Batch | None] = asyncio.Queue(settings.max_pending_batches)
        self.counters = Counters()
        self.connection = 0
        self.client: aiomqtt.Client | None = None
        self.stopping = asyncio.Event()
        self.stamp = DeadLetterClock()
        self.give_up_at = float("inf")
        self.writer: asyncio.Task[None]

    # -- the pieces -------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes, retained: bool) -> None:
        """Turn one delivery into lines (or a dead-letter); never raises on bad input."""
        self.counters.received += 1
        self.batch.messages += 1
        try:
            msg = decode(topic, payload)
            if retained and msg.topic.channel == "status" and getattr(msg.body, "ts", 1) is None:
                return  # a Last Will replayed on subscribe: stored when it first fired
            lines = message_lines(msg, self.stamp(), self.zones)
        except (InvalidMessage, LineProtocolError) as exc:
            code, reason = (
                (exc.code, exc.reason)
                if isinstance(exc, InvalidMessage)
                else ("unstorable", str(exc))
            )
            self._dead_letter(topic, payload, code, reason)
            return
        self.batch.lines.extend(lines)
        self.counters.points += len(lines)

    def _dead_letter(self, topic: str, payload: bytes, code: str, reason: str) -> None:
        self.counters.invalid += 1
        device_type = _device_type(topic)
        log.info("message dead-lettered", extra={"topic": topic[:200], "code": code})
        self.batch.lines.append(
            deadletter_line(topic, payload, code, reason, device_type, self.stamp())
        )
        self.batch.deadletters.append(deadletter_payload(topic, payload, code, reason))

    async def flush(self) -> None:
        if not self.batch.messages:
            return
        batch, self.batch = self.batch, Batch()
        await self.pending.put(batch)

    async def _receive(self, client: aiomqtt.Client) -> None:
        size = self.settings.batch_size
        connection = self.connection
        async for m in client.messages:
            self.handle(str(m.topic), _as_bytes(m.payload), m.retain)
            self.batch.acks.append((connection, m.mid, m.qos))
            if len(self.batch.lines) >= size:
                await self.flush()

    async def _flush_on_time(self) -> None:
        interval = self.settings.flush_interval
        while True:
            await asyncio.sleep(interval / 4)
            if self.batch.messages and time.monotonic() - self.batch.started >= interval:
                await self.flush()

    async def _write_batches(self) -> None:
        """Write batches in order; acknowledge each one's messages once it is stored."""
        while (batch := await self.pending.get()) is not None:
            try:
                await self._store(batch)
            except InfluxUnavailable as exc:
                log.error(
                    "giving up on InfluxDB at shutdown; unwritten messages stay with the broker",
                    extra={"error": str(exc)},
                )
                return
            self.counters.written_batches += 1
            self._acknowledge(batch)
            await self._publish_deadletters(batch.deadletters)

    async def _store(self, batch: Batch) -> None:
        """Write the batch; points InfluxDB refuses on their own become dead-letters."""
        rejected = await self.influx.write(batch.lines, self._keep_trying)
        if not rejected:
            return
        lines = []
        for r in rejected:
            log.warning("influxdb refused a point", extra={"reason": r.reason[:300]})
            self.counters.invalid += 1
            self.counters.points -= 1
            lines.append(
                deadletter_line("", r.line.encode(), "rejected_by_db", r.reason, None, self.stamp())
            )
        await self.influx.write(lines, self._keep_trying)

    def _acknowledge(self, batch: Batch) -> None:
        client = self.client
        for connection, mid, qos in batch.acks:
            # acks for an older connection are void: the broker redelivers those messages
            if (
                client is not None
                and connection == self.connection
                and mqtt_ack.ack(client, mid, qos)
            ):
                self.counters.acked += 1

    async def _publish_deadletters(self, payloads: list[bytes]) -> None:
        if not payloads or self.client is None:
            return
        try:
            for payload in payloads:
                await self.client.publish(DEADLETTER_TOPIC, payload, qos=1)
        except aiomqtt.MqttError as exc:
            log.warning(
                "dead-letter not published to MQTT (kept in InfluxDB)", extra={"error": str(exc)}
            )

    def _keep_trying(self) -> bool:
        return not self.stopping.is_set() or time.monotonic() < self.give_up_at

    # -- the connection ---------------------------------------------------------------------

    def _new_client(self) -> aiomqtt.Client:
        host, port, tls, user, password = mqtt_endpoint(self.settings.mqtt_url)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.session_expiry
        props.ReceiveMaximum = self.settings.receive_maximum
        client = aiomqtt.Client(
            host,
            port,
            identifier=self.client_id,
            username=user,
            password=password,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=props,
            tls_params=aiomqtt.TLSParameters() if tls else None,
            keepalive=30,
        )
        mqtt_ack.enable_manual_ack(client)
        return client

    def _filters(self) -> list[str]:
        group = self.settings.share_group
        prefix = f"$share/{group}/" if group else ""
        return [prefix + subscription(ch, self.settings.city) for ch in INGESTED_CHANNELS]

    async def _consume(self) -> None:
        """One reconnect loop around one client; the session survives reconnects.

        On stop the connection stays open until everything received is written and
        acknowledged, so a graceful shutdown leaves nothing for the broker to resend.
        """
        delay = 0.5
        while True:
            try:
                async with self._new_client() as client:
                    self.connection += 1
                    self.client = client
                    for f in self._filters():
                        await client.subscribe(f, qos=1)
                    log.info(
                        "connected to broker",
                        extra={
                            "url": safe_url(self.settings.mqtt_url),
                            "client_id": self.client_id,
                        },
                    )
                    delay = 0.5
                    if await _first(self._receive(client), self.stopping.wait()) == 1:
                        await self._drain()
                        return
            except aiomqtt.MqttError as exc:
                self.client = None
                if self.stopping.is_set():
                    await self._drain()
                    return
                wait = delay * random.uniform(0.5, 1.0)
                log.warning(
                    "broker connection lost, reconnecting",
                    extra={"error": str(exc), "retry_in_s": round(wait, 2)},
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), wait)
                delay = min(delay * 2, self.settings.reconnect_max_delay)

    async def _drain(self) -> None:
        """Write what was received and acknowledge it, then let the writer finish."""
        await self.flush()
        await self.pending.put(None)
        await self.writer

    async def _report(self, every: float = 60.0) -> None:
        while True:
            await asyncio.sleep(every)
            c = self.counters
            log.info(
                "ingest summary",
                extra={
                    "received": c.received,
                    "points": c.points,
                    "invalid": c.invalid,
                    "acked": c.acked,
                    "retries": self.influx.retries,
                },
            )

    async def run(self) -> None:
        """Run until :meth:`stop`; then write what was received, acknowledge it, and return."""
        await self.influx.ensure_database(lambda: not self.stopping.is_set())
        self.writer = asyncio.create_task(self._write_batches(), name="writer")
        helpers = [
            asyncio.create_task(self._flush_on_time(), name="flush-timer"),
            asyncio.create_task(self._report(), name="report"),
        ]
        try:
            # the writer only ends early if it crashed: surface that instead of hanging
            if await _first(self._consume(), asyncio.shield(self.writer)) == 1:
                self.writer.result()
        finally:
            for t in helpers:
                t.cancel()
            self.client = None
            await self.influx.aclose()
            c = self.counters
            log.info("ingester stopped", extra={"received": c.received, "acked": c.acked})

    def stop(self, grace: float = 30.0) -> None:
        """Stop receiving; keep retrying InfluxDB for ``grace`` seconds, then give up.

        Whatever could not be written by then is not acknowledged, so the broker keeps it
        for the next ingester.
        """
        self.give_up_at = time.monotonic() + grace
        self.stopping.set()


async def _first(*aws: Any) -> int:
    """Run awaitables until the first finishes; cancel the rest; return its index."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
    winner = next(i for i, t in enumerate(tasks) if t in done)
    if tasks[winner].exception() is not None:
        raise tasks[winner].exception()  # type: ignore[misc]
    return winner


def deadletter_payload(topic: str, payload: bytes, code: str, reason: str) -> bytes:
    """The MQTT dead-letter message: the whole raw payload, base64 if it is not UTF-8."""
    import base64
    import json

    try:
        text, encoding = payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(payload).decode(), "base64"
    return json.dumps(
        {
            "code": code,
            "reason": reason,
            "topic": topic,
            "payload": text,
            "payload_encoding": encoding,
            "received_at": time.time(),
        }
    ).encode()


def _device_type(topic: str) -> str | None:
    try:
        return parse_topic(topic).device_type
    except InvalidMessage:
        return None


def _as_bytes(payload: Any) -> bytes:
    return payload if isinstance(payload, bytes) else str(payload).encode()


def safe_url(url: str) -> str:
    host, port, tls, _, _ = mqtt_endpoint(url)
    return f"{'mqtts' if tls else 'mqtt'}://{host}:{port}"
