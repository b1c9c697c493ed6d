"""The ingester's own MQTT connection (ingest/mqtt.py) against a real broker: acknowledgement
only when asked, every message exactly as published, pausing, keepalive, TLS."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path

import mqtt5
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.mqtt import MqttError, MqttOptions, connect
from stack.servers import Mosquitto, free_port

from .conftest import AuthBroker

Got = list[tuple[str, bytes, int, int, bool]]


def options(broker: Mosquitto, name: str, **extra: object) -> MqttOptions:
    return MqttOptions(
        broker.host,
        broker.port,
        name,
        session_expiry=600,
        **extra,  # type: ignore[arg-type]
    )


def at_least_once(pattern: str) -> mqtt5.TopicFilter:
    # as the ingester subscribes: a live message is not flagged retained
    return mqtt5.TopicFilter(pattern, max_qos=mqtt5.QoS.AT_LEAST_ONCE, retain_as_published=False)


def publish(broker: Mosquitto, topic: str, n: int) -> None:
    p = paho.Client(CallbackAPIVersion.VERSION2)
    p.connect(broker.host, broker.port)
    p.loop_start()
    for i in range(n):
        p.publish(topic, str(i).encode(), qos=1).wait_for_publish(10)
    p.disconnect()
    p.loop_stop()


async def take(
    broker: Mosquitto,
    name: str,
    topic: str,
    ack_first: int,
    idle: float = 1.0,
    publisher: Callable[[], object] | None = None,
) -> Got:
    """Receive (while ``publisher`` runs in a thread) until idle; acknowledge the first
    ``ack_first`` in one :meth:`~MqttConnection.ack`, publish the barrier, disconnect."""
    got: Got = []
    seen = asyncio.Event()

    def on_message(*delivery: object) -> None:
        got.append(delivery)  # type: ignore[arg-type]
        seen.set()

    c = await connect(options(broker, name), on_message)
    try:
        await c.subscribe([at_least_once(topic)])
        if publisher is not None:
            await asyncio.to_thread(publisher)
        while True:
            seen.clear()
            try:
                await asyncio.wait_for(seen.wait(), idle)
            except TimeoutError:
                break
        assert c.ack([mid for _, _, mid, qos, _ in got[:ack_first] if qos])
        await c.publish(f"sync/{name}", b"", qos=1)
    finally:
        await c.disconnect()
    return got


def publish_varied(broker: Mosquitto, topic: str) -> list[tuple[str, bytes, int]]:
    """Messages that stress the decoder: v5 properties, QoS 0 and 1, empty, unicode and large
    payloads (larger than one socket read, so a packet spans several), many small ones."""
    p = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    p.connect(broker.host, broker.port)
    p.loop_start()
    props = Properties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = 3600
    props.UserProperty = [("k", "v" * 300)]  # a property block longer than 127 bytes
    cases = [
        (topic, b"plain", 1, None),
        (topic, b"", 1, None),
        (f"{topic}/città", "pâté ✓".encode(), 1, props),
        (topic, b"x" * (600 * 1024), 1, None),
        (topic, b"qos0", 0, None),
        *((topic, f"burst {i}".encode(), 1, None) for i in range(800)),
    ]
    for name, payload, qos, properties in cases:
        p.publish(name, payload, qos=qos, properties=properties).wait_for_publish(10)
    p.publish(f"{topic}/kept", b"retained", qos=1, retain=True).wait_for_publish(10)
    p.disconnect()
    p.loop_stop()
    return [(name, payload, qos) for name, payload, qos, _ in cases]


async def test_unacknowledged_messages_come_back_and_acknowledged_ones_do_not(
    mosquitto: Mosquitto, city: str
) -> None:
    """Messages queued in the persistent session while we were away, acknowledged in part."""
    topic = f"acktest/{city}"
    await take(mosquitto, city, topic, ack_first=0, idle=0.3)  # create the session
    publish(mosquitto, topic, 100)
    first = [p for _, p, _, _, _ in await take(mosquitto, city, topic, ack_first=60)]
    assert len(first) == 100
    again = [p for _, p, _, _, _ in await take(mosquitto, city, topic, ack_first=100)]
    assert again == first[60:], "exactly the 40 unacknowledged messages are resent, in order"
    assert await take(mosquitto, city, topic, ack_first=0, idle=0.5) == []


async def test_every_message_arrives_exactly_as_published(mosquitto: Mosquitto, city: str) -> None:
    topic = f"fastpath/{city}"
    sent: list[tuple[str, bytes, int]] = []
    got = await take(
        mosquitto, city, f"{topic}/#", ack_first=10_000,
        publisher=lambda: sent.extend(publish_varied(mosquitto, topic)),
    )  # fmt: skip
    live = [(t, p, q) for t, p, _, q, retained in got if not retained]
    assert live == [*sent, (f"{topic}/kept", b"retained", 1)]
    assert all(mid > 0 for _, _, mid, q, _ in got if q == 1)
    assert not any(retained for *_, retained in got), "a live message is not flagged retained"
    kept = await take(mosquitto, f"{city}-new", f"{topic}/kept", ack_first=1)
    assert [(t, p, r) for t, p, _, _, r in kept] == [(f"{topic}/kept", b"retained", True)]
    resent = await take(mosquitto, city, f"{topic}/#", ack_first=1, idle=0.5)
    assert [m for m in resent if not m[4]] == [], "nothing acknowledged comes back"


async def test_ack_acknowledges_exactly_the_ids_given(mosquitto: Mosquitto, city: str) -> None:
    topic = f"ackall/{city}"
    first = await take(
        mosquitto, city, topic, ack_first=600, publisher=lambda: publish(mosquitto, topic, 900)
    )
    assert [p for _, p, _, _, _ in first] == [str(i).encode() for i in range(900)]
    again = await take(mosquitto, city, topic, ack_first=300)
    assert [p for _, p, _, _, _ in again] == [str(i).encode() for i in range(600, 900)]
    assert await take(mosquitto, city, topic, ack_first=0, idle=0.5) == []


async def test_a_paused_connection_delivers_nothing_until_resumed_and_outlives_keepalive(
    mosquitto: Mosquitto, city: str
) -> None:
    """Backpressure: paused from inside a delivery, in the middle of a read, for longer than
    the keepalive: the PINGREQ timer keeps the broker from dropping us, and the rest comes in
    order once resumed."""
    topic = f"pause/{city}"
    got: Got = []
    all_in = asyncio.Event()

    def on_message(*delivery: object) -> None:
        got.append(delivery)  # type: ignore[arg-type]
        if len(got) == 10:
            c.pause()
        if len(got) == 500:
            all_in.set()

    c = await connect(options(mosquitto, city, keepalive=1), on_message)
    await c.subscribe([at_least_once(topic)])
    await asyncio.to_thread(publish, mosquitto, topic, 500)
    await asyncio.sleep(3)  # the broker drops a client silent for 1.5 keepalives
    assert not c.closed.done(), c.closed.result()
    assert len(got) == 10, "nothing is delivered while paused"
    c.resume()
    await asyncio.wait_for(all_in.wait(), 20)
    assert [p for _, p, _, _, _ in got] == [str(i).encode() for i in range(500)]
    assert c.ack([mid for _, _, mid, _, _ in got])
    await c.publish(f"sync/{city}", b"", qos=1)
    await c.disconnect()
    assert c.closed.result() == "disconnected by us"


async def test_tls_with_our_own_ca_and_refused_credentials(
    tls_mosquitto: tuple[Mosquitto, int, Path], city: str
) -> None:
    _, tls_port, ca = tls_mosquitto
    got: asyncio.Queue[tuple[object, ...]] = asyncio.Queue()
    tls = MqttOptions("localhost", tls_port, city, tls=True, ca_file=str(ca))
    c = await connect(tls, lambda *d: got.put_nowait(d))
    await c.subscribe([at_least_once(f"tls/{city}")])
    await c.publish(f"tls/{city}", b"over tls", qos=1)
    assert (await asyncio.wait_for(got.get(), 20))[:2] == (f"tls/{city}", b"over tls")
    await c.disconnect()
    with pytest.raises(MqttError, match="CERTIFICATE_VERIFY_FAILED"):
        await connect(MqttOptions("localhost", tls_port, city, tls=True), print)


async def test_a_session_ended_with_clean_start_and_no_expiry_keeps_nothing(
    mosquitto: Mosquitto, city: str
) -> None:
    """What bench/ingest.py does at the end of each phase."""
    topic = f"ended/{city}"
    await take(mosquitto, city, topic, ack_first=0, idle=0.3)
    c = await connect(
        MqttOptions(mosquitto.host, mosquitto.port, city, clean_start=True),
        print,  # type: ignore[arg-type]
    )
    await c.disconnect()
    publish(mosquitto, topic, 5)
    assert await take(mosquitto, city, topic, ack_first=0, idle=0.5) == []


async def test_connection_refused_is_an_mqtt_error_not_a_crash() -> None:
    with pytest.raises(MqttError, match="cannot connect"):
        await connect(MqttOptions("127.0.0.1", free_port(), "nobody", timeout=5), print)  # type: ignore[arg-type]


async def test_username_and_password_and_the_platform_s_accounts(
    auth_broker: AuthBroker, city: str
) -> None:
    """The ingester's account (smartcity/broker_acl.py): it subscribes to the device channels
    and publishes its barrier, nothing else; a wrong password is refused with a reason."""
    broker = auth_broker.broker
    base = MqttOptions(
        broker.host, broker.port, "smartcity-ingest", username="ingest",
        password=auth_broker.passwords["ingest"],
    )  # fmt: skip
    c = await connect(base, lambda *_: None)
    assert await c.subscribe([at_least_once("smartcity/v1/+/+/+/telemetry")]) == [1]
    await c.publish("smartcity/v1/_ingest/sync/smartcity-ingest", b"", qos=1)
    with pytest.raises(MqttError, match="refused a publish"):
        await c.publish(f"smartcity/v1/{city}/wastebin/wb-1/telemetry", b"{}", qos=1)
    await c.disconnect()
    wrong = dataclasses.replace(base, password="wrong")
    with pytest.raises(MqttError, match=r"refused the connection: .*check the user"):
        await connect(wrong, lambda *_: None)


async def test_unsubscribe_ends_a_subscription_of_the_session(
    mosquitto: Mosquitto, city: str
) -> None:
    """What an ingester does with a filter an earlier version subscribed to."""
    topic = f"unsub/{city}"
    await take(mosquitto, city, topic, ack_first=0, idle=0.3)  # the session holds the filter
    c = await connect(options(mosquitto, city), lambda *_: None)
    assert await c.unsubscribe([topic, f"{topic}/never"]) == [0, 17]  # 17: no such subscription
    await c.disconnect()
    publish(mosquitto, topic, 3)
    assert await take(mosquitto, city, f"{topic}/other", ack_first=0, idle=0.5) == []
