"""The gateway's MQTT side: publish the outbox for every charger, receive their commands.

A thread of its own owns a paho client and drives its network loop (as the edge agent does,
``edge.agent``): it hands the oldest outbox rows to the broker as batches, at most ``window``
messages awaiting PUBACK, deletes a batch on its PUBACK, reconnects with jittered backoff, and
passes each command that arrives on a charger's ``cmd`` topic to the OCPP side. The OCPP side
only writes to the outbox and wakes this thread, so a broker outage never slows a charger's
answers: rows wait on disk and go out when the broker is back.
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.ocpp.settings import OcppSettings
from edge.ocpp.store import BATCHED, Batch, Store
from smartcity.broker_acl import OCPP_DEVICE_TYPE
from smartcity.contract import DEADLETTER_TOPIC, InvalidMessage, encode_stored, parse_topic, topic
from smartcity.settings import mqtt_endpoint, safe_url

log = logging.getLogger("smartcity.ocpp")
_TICK = 0.05

#: Called with (charger id, payload) for each command received, on this thread.
CommandSink = Callable[[str, bytes], None]


class Publisher(threading.Thread):
    def __init__(self, settings: OcppSettings, on_command: CommandSink) -> None:
        super().__init__(name="ocpp-mqtt", daemon=True)
        self.settings = settings
        self.on_command = on_command
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.store = Store(settings.outbox_path, settings.outbox_max)
        self.cmd_filter = topic(OCPP_DEVICE_TYPE, "+", "cmd", settings.city)
        host, port, tls, _, _ = mqtt_endpoint(settings.mqtt_url)
        self.address = (host, port)
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=settings.client_id, protocol=paho.MQTTv5
        )
        user, password = settings.credentials()
        if user is not None:
            client.username_pw_set(user, password)
        if tls:
            client.tls_set_context(ssl.create_default_context(cafile=settings.ca_file))
        client.max_inflight_messages_set(settings.window + 4)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self.client = client
        self.open = self.connected = False
        self.inflight: dict[int, Batch] = {}
        self.sent_upto = 0
        self.delay = 0.5
        self.next_connect = 0.0
        self.hold_until = 0.0  # publishing paused after the broker refused a message
        self.published = 0
        self.ever_connected = threading.Event()

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.step()
            self._drain()
        finally:
            self.store.close()

    def step(self) -> None:
        if not self.open and time.monotonic() >= self.next_connect:
            self._connect()
        if self.connected and time.monotonic() >= self.hold_until:
            self._publish_backlog()
        if self.open:
            self.client.loop(timeout=_TICK)
        else:
            self.wake.wait(_TICK)
        self.wake.clear()

    def _drain(self, timeout: float = 5.0) -> None:
        """On stop: send what is waiting for a while, then disconnect."""
        deadline = time.monotonic() + timeout
        while self.connected and time.monotonic() < deadline:
            self._publish_backlog()
            if not self.inflight and self.store.batch(self.sent_upto, 1) is None:
                break
            self.client.loop(timeout=_TICK)
        if self.open:
            self.client.disconnect()
            self.client.loop(timeout=0.1)

    def _publish_backlog(self) -> None:
        while len(self.inflight) < self.settings.window:
            batch = self.store.batch(self.sent_upto, self.settings.batch_size)
            if batch is None:
                return
            self.sent_upto = batch.last
            if batch.channel == "deadletter":
                name, payload = DEADLETTER_TOPIC, batch.items[0]
            else:
                name = topic(OCPP_DEVICE_TYPE, batch.device_id, batch.channel, self.settings.city)  # type: ignore[arg-type]
                payload = (
                    encode_stored(batch.channel, batch.items, batch.zone)  # type: ignore[arg-type]
                    if batch.channel in BATCHED
                    else batch.items[0]
                )
            info = self.client.publish(name, payload, qos=1, retain=batch.channel == "status")
            self.inflight[info.mid] = batch

    # -- callbacks (on this thread) -------------------------------------------------------------

    def _connect(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.session_expiry
        try:
            self.client.connect(*self.address, keepalive=30, clean_start=False, properties=props)
        except OSError as exc:
            self._backoff("cannot reach the broker", exc)
            return
        self.open = True

    def _backoff(self, what: str, error: object) -> None:
        wait = self.delay * random.uniform(0.5, 1.0)
        self.next_connect = time.monotonic() + wait
        self.delay = min(self.delay * 2, 30.0)
        log.warning(what, extra={"error": str(error), "retry_in_s": round(wait, 2)})

    def _on_connect(
        self, client: paho.Client, userdata: object, flags: object, reason: ReasonCode,
        props: object,
    ) -> None:  # fmt: skip
        if reason.is_failure:
            log.error("broker refused the gateway's login", extra={"reason": str(reason)})
            return
        self.connected = True
        self.delay = 0.5
        # what was in flight is sent again from the outbox (it lands on the same points)
        self.inflight.clear()
        self.sent_upto = 0
        client.subscribe(self.cmd_filter, qos=1)
        self.ever_connected.set()
        log.info(
            "connected to broker",
            extra={"url": safe_url(self.settings.mqtt_url), "outbox_depth": self.store.depth},
        )

    def _on_disconnect(
        self, client: paho.Client, userdata: object, flags: object, reason: ReasonCode,
        props: object,
    ) -> None:  # fmt: skip
        was, self.connected, self.open = self.connected, False, False
        if not self.stop.is_set():
            self._backoff("broker connection lost" if was else "connection failed", reason)

    def _on_publish(
        self, client: paho.Client, userdata: object, mid: int, reason: ReasonCode, props: object
    ) -> None:
        batch = self.inflight.pop(mid, None)
        if batch is None:
            return
        if reason.is_failure:
            # refused by the broker (its ACL): keep it, and try again after a pause
            log.error(
                "broker refused a message; it stays in the outbox",
                extra={"reason": str(reason), "device_id": batch.device_id},
            )
            self.sent_upto = min(self.sent_upto, batch.first - 1)
            self.hold_until = time.monotonic() + 5
            return
        self.store.remove(batch)
        self.published += len(batch.items)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        try:
            where = parse_topic(msg.topic)
        except InvalidMessage:
            return
        if where.device_type != OCPP_DEVICE_TYPE or where.channel != "cmd":
            log.warning("ignored a message on a topic that is not ours", extra={"topic": msg.topic})
            return
        self.on_command(where.device_id, bytes(msg.payload))
