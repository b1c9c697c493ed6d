"""The agent: read the device on schedule, keep every reading in the outbox, forward it, obey.

One thread runs the agent: it asks the driver for a reading when due, stores the sample in the
outbox, hands the oldest rows to paho as batches (at most ``window`` messages awaiting PUBACK),
deletes a batch when its PUBACK arrives, and drives paho's network loop in between, so paho's
callbacks (connect, PUBACK, command) run on this same thread and the outbox needs no lock.
Reconnection is this loop's job too, with jittered exponential backoff; paho itself resends
what was in flight when a connection dropped. The driver alone runs on a thread of its own
(``edge.drivers.thread``), so a slow device never holds up keepalives or PUBACKs.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from datetime import UTC, datetime
from typing import Literal

import paho.mqtt.client as paho
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge import mqtt
from edge.commands import CommandHandler
from edge.drivers import Driver, DriverError, Sample
from edge.drivers.thread import Call, DriverThread
from edge.outbox import Batch, Outbox
from edge.settings import EdgeSettings
from smartcity import __version__
from smartcity.contract import (
    CommandResult,
    Health,
    Location,
    Status,
    encode,
    encode_stored,
    topic,
)
from smartcity.settings import safe_url

log = logging.getLogger("smartcity.edge")
#: Longest the loop waits for anything, so a stop request is seen within this time.
_TICK = 0.5
#: Longest it waits while a driver call is under way, so its result is taken up promptly.
_DRIVER_TICK = 0.02


class Agent:
    def __init__(
        self, settings: EdgeSettings, driver: Driver, outbox: Outbox, stop: threading.Event
    ) -> None:
        self.settings = settings
        self.driver = driver
        self.outbox = outbox
        self.stop = stop
        self.started = time.monotonic()
        self.topics = {
            ch: topic(settings.device_type, settings.device_id, ch, settings.city)
            for ch in ("telemetry", "events", "status", "health", "cmd", "cmd_result")
        }
        self.commands = CommandHandler(settings.device_type, driver, self.topics["cmd"])
        self.worker = DriverThread(driver)
        self.reading: Call[Sample] | None = None  # the read under way on the driver thread
        self.applying: list[Call[CommandResult]] = []  # commands under way, in order
        self.interval = driver.interval
        self.client = mqtt.new_client(settings, settings.mqtt_client_id)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.open = False  # a socket exists (CONNACK may still be pending)
        self.connected = False  # CONNACK said yes
        self.inflight: dict[int, Batch] = {}
        self.sent_upto = 0  # highest outbox id handed to paho by this process
        self.refused: list[Batch] = []  # batches the broker refused, sent again after a pause
        self.last_error: str | None = None
        self.read_errors = 0  # reads the driver could not take, reported in every heartbeat
        self.delay = settings.reconnect_min_delay
        now = time.monotonic()
        self.next_read = now
        self.next_health = now
        self.next_connect = now
        self.hold_until = 0.0  # publishing paused after the broker refused a batch
        self.full = False
        self.backlog: tuple[float, int] | None = None  # (since, rows) while replaying

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        """Run until ``stop`` is set; then send what we can, say ``offline`` and disconnect."""
        log.info(
            "edge agent started",
            extra={
                "device_id": self.settings.device_id,
                "device_type": self.settings.device_type,
                "driver": self.settings.driver,
                "outbox": str(self.outbox.path),
                "outbox_depth": self.outbox.depth,
                "next_seq": self.outbox.next_seq,
            },
        )
        try:
            while not self.stop.is_set():
                self.step()
            self._shutdown()
        finally:
            if not self.worker.close(self.settings.driver_timeout):
                log.warning("the driver did not close in time: leaving it behind")
            log.info(
                "edge agent stopped",
                extra={"outbox_depth": self.outbox.depth, "dropped": self.outbox.dropped},
            )

    def step(self) -> None:
        now = time.monotonic()
        if now >= self.next_read:
            if self.reading is None:
                self.reading = self.worker.submit(self._read_now)
            self.next_read = max(self.next_read + self.interval, now)
        self._collect(now)
        if not self.open and now >= self.next_connect:
            self._connect()
        if self.connected:
            self._publish_backlog()
            if now >= self.next_health:
                self._publish_health()
                self.next_health = now + self.settings.heartbeat
        deadlines = [self.next_read]
        deadlines.append(self.next_health if self.connected else self.next_connect)
        self._wait(min(deadlines) - time.monotonic())

    def _wait(self, seconds: float) -> None:
        # look for a driver result often, unless the driver is already overdue: then it may
        # stay stuck for long, and each pass queries the outbox
        calls = [c for c in (self.reading, *self.applying[:1]) if c is not None]
        busy = calls and not any(c.reported for c in calls)
        seconds = min(max(seconds, 0.0), _DRIVER_TICK if busy else _TICK)
        if self.open:
            self.client.loop(timeout=seconds)
        else:
            time.sleep(seconds)

    # -- readings ---------------------------------------------------------------------------

    def _read_now(self) -> Sample:
        """On the driver thread: the reading is stamped when the device is read, after any
        command submitted before it has been applied."""
        return self.driver.read(datetime.now(UTC))

    def _collect(self, now: float) -> None:
        """Take up what the driver thread finished; report a call that takes too long."""
        if self.reading is not None and self.reading.done():
            self._store(self.reading)
            self.reading = None
        while self.applying and self.applying[0].done():
            result = self.applying.pop(0).result()  # commands.apply never raises
            # paho queues it if the connection dropped meanwhile (the session is persistent)
            self.client.publish(self.topics["cmd_result"], encode(result), qos=1)
            if self.driver.interval != self.interval:
                # a new reporting interval applies from the last reading on
                self.next_read += self.driver.interval - self.interval
                self.interval = self.driver.interval
        for call, what in ((self.reading, "read"), *((c, "command") for c in self.applying[:1])):
            if call is None or call.began is None or call.reported:
                continue
            if now - call.began > self.settings.driver_timeout:
                call.reported = True
                self._error(f"driver {what} still running after {self.settings.driver_timeout:g} s")
                log.warning(
                    "the driver is slow: MQTT carries on, no new reading until it answers",
                    extra={"call": what, "timeout_s": self.settings.driver_timeout},
                )

    def _store(self, call: Call[Sample]) -> None:
        try:
            sample = call.result()
            dropped = self.outbox.store(sample.readings, sample.events)
        except Exception as exc:  # a device error, a driver bug or a full disk must not stop us
            self.read_errors += call.exception() is not None  # the device's, not the disk's
            self._error(f"reading not taken: {type(exc).__name__}: {exc}")
            expected = isinstance(exc, DriverError)  # the device did not answer: no traceback
            log.error("reading not taken", extra={"error": str(exc)}, exc_info=not expected and exc)
            return
        if call.reported:
            log.info("the slow driver answered", extra={"rows": len(sample.readings)})
        if dropped and not self.full:
            log.warning(
                "outbox full: dropping the oldest readings",
                extra={"outbox_max": self.outbox.max_items, "dropped_total": self.outbox.dropped},
            )
        self.full = dropped > 0

    def _publish_backlog(self) -> None:
        if time.monotonic() < self.hold_until:
            return
        while len(self.inflight) < self.settings.window:
            if self.refused:
                batch = self.outbox.again(self.refused.pop(0))
                if batch is None:
                    continue
            else:
                batch = self.outbox.batch(self.sent_upto, self.settings.batch_size)
                if batch is None:
                    return
                self.sent_upto = batch.last
            payload = encode_stored(batch.channel, batch.items, self.settings.zone)
            info = self.client.publish(self.topics[batch.channel], payload, qos=1)
            self.inflight[info.mid] = batch

    def _on_publish(
        self,
        client: paho.Client,
        userdata: object,
        mid: int,
        reason: ReasonCode,
        props: Properties,
    ) -> None:
        batch = self.inflight.pop(mid, None)
        if batch is None:
            return  # status, health or a command result
        if mqtt.failed(reason):
            # not stored by the broker (e.g. the ACL forbids the topic): keep it, retry later
            self._error(f"broker refused {len(batch.items)} {batch.channel} items: {reason}")
            log.error(
                "broker refused a batch; it stays in the outbox",
                extra={"reason": str(reason), "retry_in_s": self.settings.reconnect_max_delay},
            )
            self.refused.append(batch)
            self.hold_until = time.monotonic() + self.settings.reconnect_max_delay
            return
        self.outbox.remove(batch)
        self._note_backlog()

    def _note_backlog(self) -> None:
        """Log once when a backlog of more than one batch has been replayed."""
        if self.backlog is None or self.outbox.depth:
            return
        since, rows = self.backlog
        self.backlog = None
        seconds = time.monotonic() - since
        log.info(
            "backlog replayed",
            extra={
                "rows": rows,
                "seconds": round(seconds, 3),
                "rows_per_s": round(rows / seconds) if seconds else None,
            },
        )

    # -- health and status ------------------------------------------------------------------

    def health(self) -> Health:
        return Health(
            v=1,
            ts=datetime.now(UTC),
            zone=self.settings.zone,
            version=__version__,
            uptime=round(time.monotonic() - self.started, 3),
            outboxDepth=self.outbox.depth,
            dropped=self.outbox.dropped,
            readErrors=self.read_errors,
            lastError=self.last_error,
        )

    def _publish_health(self) -> None:
        self.client.publish(self.topics["health"], encode(self.health()), qos=1)

    def _status(self, state: Literal["online", "offline"]) -> bytes:
        s = self.settings
        location = (
            Location(lat=s.lat, lon=s.lon) if s.lat is not None and s.lon is not None else None
        )
        return encode(
            Status(
                v=1,
                state=state,
                ts=datetime.now(UTC),
                zone=s.zone,
                location=location,
                firmware=f"smartcity-edge {__version__} {s.driver}"[:64],
            )
        )

    def _error(self, message: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.last_error = f"{stamp} {message}"[:512]

    # -- connection -------------------------------------------------------------------------

    def _connect(self) -> None:
        try:
            mqtt.connect(self.client, self.settings)
        except OSError as exc:  # refused, unreachable, DNS, TLS: all worth retrying
            self._error(f"cannot reach the broker: {exc}")
            self._backoff("cannot reach the broker", exc)
            return
        self.open = True

    def _backoff(self, what: str, error: object) -> None:
        wait = self.delay * random.uniform(0.5, 1.0)
        self.next_connect = time.monotonic() + wait
        self.delay = min(self.delay * 2, self.settings.reconnect_max_delay)
        log.warning(what, extra={"error": str(error), "retry_in_s": round(wait, 2)})

    def _on_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        props: Properties | None,
    ) -> None:
        if mqtt.failed(reason):
            # the broker closes the socket next; _on_disconnect schedules the retry
            self._error(f"broker refused the connection: {reason}")
            log.error("broker refused the connection", extra={"reason": str(reason)})
            return
        self.connected = True
        self.delay = self.settings.reconnect_min_delay
        client.subscribe(self.topics["cmd"], qos=1)
        client.publish(self.topics["status"], self._status("online"), qos=1, retain=True)
        self.next_health = time.monotonic()
        depth = self.outbox.depth
        if depth > self.settings.batch_size:
            self.backlog = (time.monotonic(), depth)
        log.info(
            "connected to broker",
            extra={
                "url": safe_url(self.settings.mqtt_url),
                "client_id": self.settings.mqtt_client_id,
                "outbox_depth": depth,
            },
        )

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        props: Properties | None,
    ) -> None:
        was_connected, self.connected, self.open = self.connected, False, False
        if self.stop.is_set() and was_connected:
            return
        if was_connected:
            self._error(f"broker connection lost: {reason}")
        self._backoff("broker connection lost" if was_connected else "connection failed", reason)

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        props: Properties | None,
    ) -> None:
        for reason in reasons:
            if mqtt.failed(reason):
                self._error(f"broker refused the command subscription: {reason}")
                log.error(
                    "broker refused our command subscription: commands will not arrive; "
                    "check the broker ACL for this device",
                    extra={"topic": self.topics["cmd"], "reason": str(reason)},
                )

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        decoded = self.commands.decode(msg.topic, msg.payload)
        if isinstance(decoded, CommandResult):
            client.publish(self.topics["cmd_result"], encode(decoded), qos=1)
        elif decoded is not None:  # valid: the driver carries it out on its own thread
            self.applying.append(self.worker.submit(self.commands.apply, decoded))

    # -- stopping ---------------------------------------------------------------------------

    def _shutdown(self) -> None:
        """Send what is waiting (up to ``drain_timeout``), publish ``offline``, disconnect."""
        if not self.connected:
            return
        deadline = time.monotonic() + self.settings.drain_timeout
        while self.connected and time.monotonic() < deadline:
            self._collect(time.monotonic())  # a command still being applied is answered
            self._publish_backlog()
            waiting = self.applying or self.inflight or self.refused
            if not waiting and not self.outbox.batch(self.sent_upto, 1):
                break
            self.client.loop(timeout=0.1)
        if not self.connected:
            return
        info = self.client.publish(
            self.topics["status"], self._status("offline"), qos=1, retain=True
        )
        deadline = time.monotonic() + 2.0
        while self.connected and not info.is_published() and time.monotonic() < deadline:
            self.client.loop(timeout=0.1)
        self.client.disconnect()
        self.client.loop(timeout=0.1)


def serve(settings: EdgeSettings, stop: threading.Event) -> None:
    """Open the outbox and the driver, and run the agent until ``stop``."""
    from edge.drivers import DRIVERS

    outbox = Outbox(settings.outbox_path, settings.outbox_max)
    try:
        driver = DRIVERS[settings.driver][settings.device_type](settings)
        Agent(settings, driver, outbox, stop).run()
    finally:
        outbox.close()
