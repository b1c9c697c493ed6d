"""A QoS 1 publisher that knows exactly what the broker has acknowledged.

A publisher's own count is not proof (``mosquitto_pub -l`` at QoS 1 delivered a third of what
it was given here), so every message is tracked until its PUBACK, and the number of readings
acknowledged is what ``smartcity simulate --messages N`` waits for.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import cast

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from smartcity.settings import mqtt_endpoint

log = logging.getLogger("smartcity.publisher")


class BrokerUnreachable(RuntimeError):
    """The broker did not answer, or refused the login; the message says what to do."""


class AckingPublisher:
    def __init__(self, url: str, client_id: str, window: int = 10_000) -> None:
        host, port, tls, user, password = mqtt_endpoint(url)
        self.address = (host, port)
        self.user = user
        self.url = url
        self.window = window
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311
        )
        if user:
            self.client.username_pw_set(user, password)
        if tls:
            self.client.tls_set_context(ssl.create_default_context())
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        # paho types the delays as int, but sleeps them as float seconds: 0.1 s is meant
        self.client.reconnect_delay_set(cast(int, 0.1), 5)
        self.connected = threading.Event()
        self.answered = threading.Event()  # a CONNACK came, accepting or refusing
        self.refusal: str | None = None
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.outstanding: deque[tuple[paho.MQTTMessageInfo, int]] = deque()
        #: Filters subscribed to, again on every reconnect (the session is not kept).
        self.filters: list[str] = []
        self.sent_messages = 0
        self.acked_messages = 0
        self.acked_readings = 0

    def _on_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.ConnectFlags,
        rc: ReasonCode,
        props: Properties | None = None,
    ) -> None:
        if not rc.is_failure:
            self.connected.set()
            for f in self.filters:
                client.subscribe(f, qos=1)
        else:
            self.refusal = str(rc)
            log.error("broker refused the connection", extra={"reason": str(rc)})
        self.answered.set()

    def _on_disconnect(self, *args: object) -> None:
        if self.connected.is_set():
            log.warning("broker connection lost; reconnecting (unacknowledged messages are resent)")
        self.connected.clear()

    def connect(self, timeout: float = 10.0) -> None:
        self.client.connect_async(*self.address, keepalive=30)
        self.client.loop_start()
        self.answered.wait(timeout)
        if self.connected.is_set():
            return
        self.client.loop_stop()
        where = f"{self.address[0]}:{self.address[1]}"
        if self.refusal is not None:
            who = f"of user {self.user!r}" if self.user else "without a user name"
            raise BrokerUnreachable(
                f"the MQTT broker at {where} refused the login {who} ({self.refusal}): put the "
                "right user and password in --mqtt-url / SMARTCITY_MQTT_URL "
                "(mqtt://user:password@host:port; `smartcity up` keeps the simulator's in "
                "var/mosquitto/passwords/simulator)"
            )
        raise BrokerUnreachable(
            f"cannot reach the MQTT broker at {where} within {timeout:.0f} s: is it running? "
            "(`smartcity up` starts one; or set --mqtt-url / SMARTCITY_MQTT_URL)"
        )

    def subscribe(
        self, topic_filter: str, answer: Callable[[str, bytes], tuple[str, bytes] | None]
    ) -> None:
        """Receive messages on ``topic_filter``; what ``answer`` returns for one is published
        (QoS 1, not counted among the readings: it runs on paho's thread, which must not wait)."""

        def on_message(client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
            reply = answer(msg.topic, bytes(msg.payload))
            if reply is not None:
                client.publish(*reply, qos=1)

        def on_subscribe(
            client: paho.Client,
            userdata: object,
            mid: int,
            reasons: list[ReasonCode],
            props: Properties | None,
        ) -> None:
            if any(r.is_failure for r in reasons):
                log.warning(
                    "the broker refused the command subscription: the fleet will not answer "
                    "commands (the simulator account needs read on command topics)",
                    extra={"filter": topic_filter},
                )

        self.client.on_message = on_message
        self.client.on_subscribe = on_subscribe
        self.filters.append(topic_filter)
        if self.connected.is_set():
            self.client.subscribe(topic_filter, qos=1)

    def publish(self, topic: str, payload: bytes, readings: int = 0, retain: bool = False) -> None:
        """Queue one QoS 1 message; blocks while ``window`` messages await their PUBACK."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        self.outstanding.append((info, readings))
        self.sent_messages += 1
        self._sweep()
        while len(self.outstanding) >= self.window:
            time.sleep(0.001)
            self._sweep()

    def _sweep(self) -> None:
        out = self.outstanding
        while out and _acknowledged(out[0][0]):
            _, readings = out.popleft()
            self.acked_messages += 1
            self.acked_readings += readings

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every message is acknowledged; False if ``timeout`` ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.outstanding:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.005)
            self._sweep()
        return True

    def close(self) -> None:
        self.connected.clear()  # a disconnect we asked for is not worth a warning
        self.client.disconnect()
        self.client.loop_stop()


def _acknowledged(info: paho.MQTTMessageInfo) -> bool:
    """Whether the broker has acknowledged this message.

    A message published while the connection is down carries ``MQTT_ERR_NO_CONN`` and paho's
    ``is_published`` raises for it, although paho keeps the message and sends it on reconnect;
    its PUBACK then marks the same info object as published.
    """
    try:
        return info.is_published()
    except RuntimeError:
        return bool(info._published)
