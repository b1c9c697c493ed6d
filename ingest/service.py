"""The ingest loop: receive, validate, batch, write, and only then acknowledge.

Receiving and writing run as separate tasks joined by a bounded queue of batches, so a slow
InfluxDB never stalls the MQTT socket. A message is acknowledged only once the batch holding it
(or its dead-letter point) is stored: in InfluxDB (204), or, while InfluxDB is away and the
in-memory queue is full, fsynced to the disk spool that is drained first when it returns. A
crash at any moment therefore loses nothing: the broker resends what was not acknowledged, and a
resent reading lands on the same InfluxDB point.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import mqtt5

from ingest.convert import (
    DeadLetterClock,
    cut_payload,
    cut_text,
    deadletter_line,
    message_lines,
)
from ingest.metrics import BROKER_TOPICS, IngestMetrics
from ingest.mqtt import Connection, ConnectionFactory, Delivery, MqttError, MqttOptions, connect
from ingest.registry import registry_zones
from ingest.settings import IngestSettings
from ingest.spool import Spool
from smartcity.contract import (
    DEADLETTER_TOPIC,
    INGESTED_CHANNELS,
    ROOT,
    VERSION,
    Events,
    InvalidMessage,
    Telemetry,
    decode,
    parse_topic,
    subscription,
)
from smartcity.influx import InfluxUnavailable, InfluxWriter
from smartcity.lineprotocol import LineProtocolError
from smartcity.retention import RetentionError, catch_up, hours, late_before, pending_line
from smartcity.settings import mqtt_endpoint, safe_url

log = logging.getLogger("smartcity.ingest")
#: Where the ingester publishes its shutdown barrier (no one subscribes; see Ingester._settle).
SYNC_TOPIC_PREFIX = "smartcity/v1/_ingest/sync"
#: MQTT copies of dead-letters waiting for the broker; beyond this many they are skipped (the
#: InfluxDB point is the record), so a broker slow to take them never holds memory or readings.
DEADLETTER_BACKLOG = 1000


@dataclass
class Batch:
    """Lines to write, and the deliveries to acknowledge once they are stored."""

    #: The MQTT connection the messages came on: message ids are void on any other.
    connection: int
    lines: list[str] = field(default_factory=list)
    mids: list[int] = field(default_factory=list)  # QoS 1 messages to acknowledge
    deadletters: list[bytes] = field(default_factory=list)
    newest: datetime | None = None  # the newest reading's device time, for the lag metric
    #: (device type, device id, hour) already marked late in this batch
    late: set[tuple[str, str, int]] = field(default_factory=set)
    started: float = field(default_factory=time.monotonic)

    def __bool__(self) -> bool:
        return bool(self.lines or self.mids)

    @property
    def newest_ts(self) -> float | None:
        return self.newest.timestamp() if self.newest is not None else None


class Ingester:
    """``writer`` and ``connect`` default to the real InfluxDB writer and MQTT connection; tests
    pass fakes to exercise batching, spooling and acknowledgement without servers."""

    def __init__(
        self,
        settings: IngestSettings,
        worker: int = 0,
        *,
        writer: InfluxWriter | None = None,
        connect: ConnectionFactory | None = None,
    ) -> None:
        self.settings = settings
        self.worker = worker
        self.client_id = settings.client_id if worker == 0 else f"{settings.client_id}-{worker}"
        self.reports_broker = settings.broker_stats and worker <= 1
        self.rolls_up = worker <= 1  # worker 1 (or the only one) recomputes late windows
        self.influx = writer if writer is not None else InfluxWriter(settings)
        self.connect: ConnectionFactory = connect if connect is not None else self._new_client
        self.spool = Spool(settings.spool_dir / self.client_id, settings.spool_max_bytes)
        self.metrics = IngestMetrics(self.client_id)
        self.zones = registry_zones(settings)
        self.own_city = f"{ROOT}/{VERSION}/{settings.city}/"
        self.connection = 0
        self.batch = Batch(self.connection)
        # bounded by pausing the reader at max_pending_batches (see flush), not by the queue
        self.pending: asyncio.Queue[Batch | None] = asyncio.Queue()
        self.deadletters: asyncio.Queue[bytes] = asyncio.Queue(DEADLETTER_BACKLOG)
        self._deadletters_skipped = 0
        self.client: Connection | None = None
        self.stopping = asyncio.Event()
        self.stamp = DeadLetterClock()
        self.give_up_at = float("inf")
        self.writer: asyncio.Task[None]
        self._late_checked = 0.0
        self._late_before = datetime.min.replace(tzinfo=UTC)

    # -- turning deliveries into lines --------------------------------------------------------

    def handle(self, topic: str, payload: bytes, retained: bool = False) -> None:
        """Turn one delivery into lines (or a dead-letter); never raises on bad input."""
        self.metrics.received += 1
        if not topic.startswith(self.own_city) and (city := _city_of(topic)) is not None:
            if not retained:  # a retained one replayed on subscribe was refused when it came
                reason = f"city level {city!r:.80} is not {self.settings.city!r}, served here"
                self._dead_letter(topic, payload, "wrong_city", reason)
            return
        try:
            msg = decode(topic, payload)
            if retained and msg.topic.channel == "status" and getattr(msg.body, "ts", 1) is None:
                return  # a Last Will replayed on subscribe: stored when it first fired
            lines = message_lines(msg, self.stamp(), self.zones)
        except InvalidMessage as exc:
            self._dead_letter(topic, payload, exc.code, exc.reason)
            return
        except LineProtocolError as exc:
            self._dead_letter(topic, payload, "unstorable", str(exc))
            return
        batch = self.batch
        batch.lines.extend(lines)
        if isinstance(msg.body, Telemetry):
            ts = msg.body.readings[-1].ts  # compared as datetimes: far cheaper than .timestamp()
            if batch.newest is None or ts > batch.newest:
                batch.newest = ts
            self._mark_late(msg.topic.device_type, msg.topic.device_id, msg.body.readings)
        elif isinstance(msg.body, Events):
            self._mark_late(msg.topic.device_type, msg.topic.device_id, msg.body.events)

    def _mark_late(self, device_type: str, device_id: str, items: list[Any]) -> None:
        """Mark the windows of readings too late for the rollups' continuous queries: a point
        per device and hour, in the same write as the readings (see smartcity.retention)."""
        now = time.time()
        if now >= self._late_checked + 10:
            self._late_checked = now
            self._late_before = datetime.fromtimestamp(late_before(now), UTC)
        late = [x.ts for x in items if x.ts < self._late_before]
        if not late:
            return
        batch = self.batch
        for hour in hours(t.timestamp() for t in late):
            key = (device_type, device_id, hour)
            if key not in batch.late:
                batch.late.add(key)
                batch.lines.append(
                    pending_line(self.client_id, device_type, device_id, hour, self.stamp())
                )

    def _dead_letter(self, topic: str, payload: bytes, code: str, reason: str) -> None:
        self.metrics.invalid += 1
        log.info("message dead-lettered", extra={"topic": topic[:200], "code": code})
        device_type = _device_type(topic)
        self.batch.lines.append(
            deadletter_line(topic, payload, code, reason, device_type, self.stamp())
        )
        self.batch.deadletters.append(deadletter_payload(topic, payload, code, reason))

    # -- batches: memory, spool, InfluxDB -----------------------------------------------------

    def flush(self) -> None:
        """Hand the current batch to the writer, or spill it to disk while InfluxDB is away."""
        if not self.batch:
            return
        batch, self.batch = self.batch, Batch(self.connection)
        away = self._queue_full() and self.influx.failing
        if (self.spool.depth or away) and self.spool.has_room(_size(batch.lines)):
            # keep order: once anything is on disk, newer batches follow it there
            self.spool.put(batch.lines)
            self.metrics.spooled += 1
            self.metrics.spool_depth = self.spool.depth
            self._acknowledge(batch)
            self._queue_deadletters(batch.deadletters)
            return
        self.pending.put_nowait(batch)
        self.metrics.queue_depth = self.pending.qsize()
        if self.client is not None and self._backlogged():
            self.client.pause()

    def _queue_full(self) -> bool:
        return self.pending.qsize() >= self.settings.max_pending_batches

    def _backlogged(self) -> bool:
        """InfluxDB is slow, not down: stop reading until a batch is written (the broker queues
        meanwhile). While it is down, batches beyond the limit go to the spool instead."""
        return self._queue_full() and not self.influx.failing

    def _resume_if_caught_up(self) -> None:
        if self.client is not None and self.client.paused and not self._backlogged():
            self.client.resume()

    async def _write_batches(self) -> None:
        """Write queued batches, then spooled ones, in order; acknowledge each once stored."""
        while True:
            if self.pending.empty() and self.spool.depth:
                path, lines = self.spool.oldest()  # type: ignore[misc]
                if not await self._store(lines, None):
                    return
                self.spool.remove(path)
                self.metrics.spool_depth = self.spool.depth
                continue
            batch = await self.pending.get()
            self.metrics.queue_depth = self.pending.qsize()
            self._resume_if_caught_up()
            if batch is None:
                return
            if not await self._store(batch.lines, batch.newest_ts):
                self._spill_unwritten(batch)
                return
            self._acknowledge(batch)
            self._queue_deadletters(batch.deadletters)

    async def _store(self, lines: list[str], newest_ts: float | None) -> bool:
        """Write lines; refused ones become dead-letters. False if we gave up (shutdown)."""
        started = time.monotonic()
        retries_before = self.influx.retries
        try:
            rejected = await self.influx.write(lines, self._keep_trying)
            if rejected:
                await self.influx.write(self._rejections(rejected), self._keep_trying)
        except InfluxUnavailable as exc:
            log.error("InfluxDB still unavailable at shutdown", extra={"error": str(exc)})
            return False
        finally:
            self.metrics.retries += self.influx.retries - retries_before
        self.metrics.observe_write(
            len(lines) - len(rejected), time.monotonic() - started, newest_ts
        )
        return True

    def _rejections(self, rejected: list[Any]) -> list[str]:
        out = []
        for r in rejected:
            log.warning("influxdb refused a point", extra={"reason": r.reason[:300]})
            self.metrics.invalid += 1
            out.append(
                deadletter_line("", r.line.encode(), "rejected_by_db", r.reason, None, self.stamp())
            )
        return out

    def _spill_unwritten(self, first: Batch) -> None:
        """At shutdown with InfluxDB down: keep what we hold on disk and acknowledge it."""
        held = [first]
        while not self.pending.empty():
            b = self.pending.get_nowait()
            if b is not None:
                held.append(b)
        for b in held:
            if not self.spool.has_room(_size(b.lines)):
                log.error("spool full: leaving the rest unacknowledged for the broker to resend")
                return
            self.spool.put(b.lines)
            self._acknowledge(b)
        log.warning(
            "batches kept in the disk spool for the next start", extra={"batches": len(held)}
        )

    def _acknowledge(self, batch: Batch) -> None:
        client = self.client
        # acks for an older connection are void: the broker redelivers those messages
        if client is not None and batch.connection == self.connection and client.ack(batch.mids):
            self.metrics.acked += len(batch.mids)

    def _queue_deadletters(self, payloads: list[bytes]) -> None:
        """Hand dead-letters to :meth:`_publish_deadletters` without waiting for the broker:
        storing and acknowledging readings must never wait on a dead-letter's PUBACK."""
        for payload in payloads:
            try:
                self.deadletters.put_nowait(payload)
            except asyncio.QueueFull:
                if not self._deadletters_skipped:
                    log.warning("dead-letters come faster than the broker takes them: MQTT "
                                "copies skipped (kept in InfluxDB)")  # fmt: skip
                self._deadletters_skipped += 1

    async def _publish_deadletters(self) -> None:
        """Publish queued dead-letters, one at a time, for as long as the ingester runs."""
        failing = False
        while True:
            payload = await self.deadletters.get()
            try:
                if self.client is None:
                    raise MqttError("not connected")
                await self.client.publish(DEADLETTER_TOPIC, payload, qos=1)
                failing = False
            except MqttError as exc:
                if not failing:  # once per outage, not once per message
                    log.warning("dead-letter not published to MQTT (kept in InfluxDB)",
                                extra={"error": str(exc)})  # fmt: skip
                failing = True
            finally:
                self.deadletters.task_done()
            if self.deadletters.empty() and self._deadletters_skipped:
                log.info("dead-letter backlog cleared",
                         extra={"skipped": self._deadletters_skipped})  # fmt: skip
                self._deadletters_skipped = 0

    def _keep_trying(self) -> bool:
        return not self.stopping.is_set() or time.monotonic() < self.give_up_at

    # -- the connection -----------------------------------------------------------------------

    async def _new_client(self, on_message: Delivery) -> Connection:
        """The real connection: persistent session, Receive Maximum, TLS with ``--ca-file``."""
        host, port, tls, user, password = mqtt_endpoint(self.settings.mqtt_url)
        if user and self.worker:
            # the broker binds each login to one client id: worker i has a login of its own,
            # <user>-<i>, with the same password (smartcity/broker_acl.py makes ingest-1...)
            user = f"{user}-{self.worker}"
        options = MqttOptions(
            host,
            port,
            self.client_id,
            tls=tls,
            ca_file=str(self.settings.ca_file) if self.settings.ca_file else None,
            username=user,
            password=password,
            clean_start=False,
            session_expiry=self.settings.session_expiry,
            receive_maximum=self.settings.receive_maximum,
            keepalive=30,
            timeout=120,  # a resumed session's queue comes before the SUBACK
            publish_timeout=10,
        )
        return await connect(options, on_message)

    def _filters(self) -> list[str]:
        group = self.settings.share_group
        if group is None:
            group = "ingest" if self.settings.workers > 1 else ""
        prefix = f"$share/{group}/" if group else ""
        return [prefix + subscription(ch) for ch in INGESTED_CHANNELS]

    def _former_filters(self) -> list[str]:
        """What earlier ingesters subscribed to: their own city only (so other cities' messages
        went unread). Left in a resumed session, it would deliver our city's messages twice."""
        city = self.settings.city
        return [f.replace(f"/{VERSION}/+/", f"/{VERSION}/{city}/", 1) for f in self._filters()]

    async def _subscribe(self, client: Connection) -> None:
        """Every city's device channels: ours are stored, others dead-lettered (``wrong_city``);
        nothing the broker accepts under ``smartcity/v1/`` goes unread."""
        # at QoS 1 at most (the broker downgrades a QoS 2 publish); retained status only when
        # the subscription is new, not on every reconnect; the retain flag only on a replayed
        # message, not on a live one (a Last Will firing now is stored, see handle)
        filters = [
            mqtt5.TopicFilter(
                f,
                max_qos=mqtt5.QoS.AT_LEAST_ONCE,
                retain_as_published=False,
                retain_handling=mqtt5.RetainHandling.SEND_IF_SUBSCRIPTION_NOT_EXISTS,
            )
            for f in self._filters()
        ]
        if self.reports_broker:
            filters += [
                mqtt5.TopicFilter(t, max_qos=mqtt5.QoS.AT_MOST_ONCE) for t in BROKER_TOPICS.values()
            ]
        codes = await client.subscribe(filters)
        for f, code in zip(filters, codes, strict=False):
            if code >= 0x80:
                log.error(
                    "the broker refused a subscription: check its ACL for this user",
                    extra={"filter": f.pattern, "reason_code": code},
                )
        await client.unsubscribe(self._former_filters())

    def _on_message(self, topic: str, payload: bytes, mid: int, qos: int, retain: bool) -> None:
        """Each delivery, straight from the connection's read path (the hot path)."""
        if self.stopping.is_set():
            return  # draining: left unacknowledged, the broker sends it again next time
        if topic.startswith("$SYS/"):
            self.metrics.broker_value(topic, payload)
            return
        self.handle(topic, payload, retain)
        if qos:
            self.batch.mids.append(mid)
        if len(self.batch.lines) >= self.settings.batch_size:
            self.flush()

    async def _consume(self) -> None:
        """One reconnect loop; the session survives reconnects.

        On stop the connection stays open until everything received is written and
        acknowledged, so a graceful shutdown leaves nothing for the broker to resend.
        """
        delay = 0.5
        while True:
            try:
                self._new_connection()
                client = await self.connect(self._on_message)
                self.client = client
                try:
                    # a resumed session sends its queue at once, before the SUBACK: those
                    # messages go to _on_message like any other
                    await self._subscribe(client)
                    log.info(
                        "connected to broker",
                        extra={
                            "url": safe_url(self.settings.mqtt_url),
                            "client_id": self.client_id,
                        },
                    )
                    self._mark_ready(True)
                    delay = 0.5
                    if await _first(client.wait_closed(), self.stopping.wait()) == 1:
                        await self._drain()
                        return
                finally:
                    await client.disconnect()
            except MqttError as exc:
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

    def _new_connection(self) -> None:
        """Number the next connection before connecting (messages can arrive with the CONNACK).

        What the batch holds from the old one is still written, but its message ids mean nothing
        on the new connection: the broker resends those messages instead.
        """
        self.connection += 1
        self._mark_ready(False)
        self.flush()
        self.batch.connection = self.connection

    def _mark_ready(self, ready: bool) -> None:
        """``--ready-file`` exists exactly while we are subscribed: not from an earlier run (a
        restarted container keeps its /tmp), nor while reconnecting, nor once stopped."""
        path = self.settings.ready_file
        if path is None:
            return
        if ready:
            path.touch()
        else:
            path.unlink(missing_ok=True)

    async def _drain(self) -> None:
        """Write what was received and acknowledge it, then let the writer finish."""
        self.batch.lines.extend(self.metrics.lines(time.time_ns()))
        self.flush()
        self.pending.put_nowait(None)
        await self.writer
        if self.client is not None:
            self.client.resume()  # the dead-letters' and the barrier's PUBACKs must be read
        with contextlib.suppress(TimeoutError):  # the InfluxDB points are the record
            await asyncio.wait_for(self.deadletters.join(), self.settings.shutdown_grace)
        if self.client is not None:
            with contextlib.suppress(MqttError):
                await self._settle(self.client)

    async def _settle(self, client: Connection) -> None:
        """Return once the broker has processed every acknowledgement sent so far.

        Closing a socket that still has unread incoming data makes the kernel send a reset,
        and the broker then discards whatever it had not yet read from us, our last PUBACKs
        included (seen here: the final batch redelivered after a clean shutdown). The broker
        handles a connection's packets in order, so once it acknowledges this QoS 1 publish
        it has applied every PUBACK before it.
        """
        await client.publish(f"{SYNC_TOPIC_PREFIX}/{self.client_id}", b"", qos=1)

    # -- periodic work --------------------------------------------------------------------------

    async def _flush_on_time(self) -> None:
        """Write a part-full batch once it is ``flush_interval`` old, or as soon as no message
        came for ``flush_idle``: the end of a burst is then stored at once, not 0.5 s later."""
        interval, idle = self.settings.flush_interval, self.settings.flush_idle
        tick = min(interval / 4, idle / 2) if idle else interval / 4
        seen, quiet_since = self.metrics.received, time.monotonic()
        while True:
            await asyncio.sleep(tick)
            self._resume_if_caught_up()  # InfluxDB may have started failing: spool from now on
            if self._backlogged():
                continue  # nothing comes in while paused, and the queue is full
            now = time.monotonic()
            if self.metrics.received != seen:
                seen, quiet_since = self.metrics.received, now
            elif self.batch and idle and now - quiet_since >= idle:
                self.flush()
                continue
            if self.batch and now - self.batch.started >= interval:
                self.flush()

    async def _roll_up_late(self) -> None:
        """Recompute the rollups of windows marked late, every ``rollup_interval``, on a client
        of its own: a recomputation may take minutes after a long outage, writes must not wait."""
        influx = InfluxWriter(self.settings, timeout=600)
        try:
            while True:
                await asyncio.sleep(self.settings.rollup_interval)
                try:
                    await catch_up(influx, self.settings.rollup_delay)
                except RetentionError as exc:
                    log.warning("late rollups failed, retrying later", extra={"error": str(exc)})
        finally:
            await influx.aclose()

    async def _report(self) -> None:
        """Health figures into InfluxDB every ``stats_interval``; a log summary every minute."""
        every = self.settings.stats_interval
        last_log = time.monotonic()
        while True:
            await asyncio.sleep(every)
            self.batch.lines.extend(self.metrics.lines(time.time_ns()))
            if time.monotonic() - last_log >= 60:
                last_log = time.monotonic()
                m = self.metrics
                log.info(
                    "ingest summary",
                    extra={
                        "received": m.received,
                        "points": m.points,
                        "invalid": m.invalid,
                        "acked": m.acked,
                        "retries": m.retries,
                        "spool": m.spool_depth,
                    },
                )

    async def run(self) -> None:
        """Run until :meth:`stop`; then write what was received, acknowledge it, and return."""
        self.metrics.serve(self.settings.metrics_port)
        self.metrics.spool_depth = self.spool.depth
        if self.spool.depth:
            log.info(
                "draining the disk spool left by the last run", extra={"batches": self.spool.depth}
            )
        await self.influx.ensure_database(lambda: not self.stopping.is_set())
        self.writer = asyncio.create_task(self._write_batches(), name="writer")
        helpers = [
            asyncio.create_task(self._flush_on_time(), name="flush-timer"),
            asyncio.create_task(self._report(), name="report"),
            asyncio.create_task(self._publish_deadletters(), name="dead-letters"),
        ]
        if self.rolls_up and self.settings.rollup_interval:
            helpers.append(asyncio.create_task(self._roll_up_late(), name="late-rollups"))
        consumer = asyncio.create_task(self._consume(), name="consumer")
        try:
            await asyncio.wait({consumer, self.writer}, return_when=asyncio.FIRST_COMPLETED)
            if self.writer.done() and self.writer.exception() is not None:
                consumer.cancel()  # a crash in the writer is a bug: surface it, don't hang
                self.writer.result()
            # the writer also ends when the consumer drains it; the consumer then settles its
            # acknowledgements and disconnects, which must not be cut short
            await consumer
        finally:
            for t in helpers:
                t.cancel()
            self.client = None
            self._mark_ready(False)
            await self.influx.aclose()
            m = self.metrics
            log.info("ingester stopped", extra={"received": m.received, "acked": m.acked})

    def stop(self) -> None:
        """Stop receiving; keep retrying InfluxDB for ``shutdown_grace`` seconds, then spool."""
        self.give_up_at = time.monotonic() + self.settings.shutdown_grace
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
    error = tasks[winner].exception()
    if error is not None:
        raise error
    return winner


def deadletter_payload(topic: str, payload: bytes, code: str, reason: str) -> bytes:
    """The MQTT dead-letter message: the payload cut as in the InfluxDB point (UTF-8 text, or
    base64 if it is not UTF-8), so the message stays far below the broker's packet limit."""
    kept = cut_payload(payload)
    try:
        text, encoding = kept.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(kept).decode(), "base64"
    return json.dumps(
        {
            "code": code,
            "reason": cut_text(reason),
            "topic": cut_text(topic),
            "payload": text,
            "payload_encoding": encoding,
            "payload_bytes": len(payload),
            "payload_truncated": len(kept) < len(payload),
            "received_at": time.time(),
        }
    ).encode()


def _size(lines: list[str]) -> int:
    """About what the lines take in the spool: their characters and a newline each."""
    return sum(map(len, lines)) + len(lines)


def _city_of(topic: str) -> str | None:
    """The city level of a topic our filters match (six levels under smartcity/v1), else None:
    any other topic is refused by :func:`decode` for its shape."""
    parts = topic.split("/")
    return parts[2] if len(parts) == 6 and parts[0] == ROOT and parts[1] == VERSION else None


def _device_type(topic: str) -> str | None:
    try:
        return parse_topic(topic).device_type
    except InvalidMessage:
        return None
