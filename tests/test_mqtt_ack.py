"""The one place that reaches under aiomqtt: manual acknowledgement and the fast receive path,
against a real broker."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest import mqtt_ack
from stack.servers import Mosquitto


def client(broker: Mosquitto, name: str) -> aiomqtt.Client:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 600
    return aiomqtt.Client(
        broker.host, broker.port, identifier=name, protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False, properties=props,
    )  # fmt: skip


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
) -> list[tuple[str, bytes, int, int, bool]]:
    """Receive through :func:`mqtt_ack.take_delivery` (while ``publisher`` runs in a thread)
    until idle; acknowledge the first ``ack_first`` in one :func:`mqtt_ack.ack_all`, settle,
    leave."""
    got: list[tuple[str, bytes, int, int, bool]] = []
    c = client(broker, name)
    mqtt_ack.take_delivery(c, lambda *delivery: got.append(delivery))
    async with c:
        await c.subscribe(topic, qos=1)
        if publisher is not None:
            await asyncio.to_thread(publisher)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(idle):
                async for _ in c.messages:
                    raise AssertionError("a message reached aiomqtt's queue")
        assert mqtt_ack.ack_all(c, [mid for _, _, mid, qos, _ in got[:ack_first] if qos])
        await mqtt_ack.settle(c, f"sync/{name}")
    return got


def publish_varied(broker: Mosquitto, topic: str) -> list[tuple[str, bytes, int]]:
    """Messages that stress the decoder: v5 properties, QoS 0 and 1, empty, unicode and large
    payloads (larger than one read-ahead, so a packet spans several reads), many small ones."""
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
        (topic, b"x" * (mqtt_ack.READ_AHEAD + 1000), 1, None),
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


async def test_the_fast_path_delivers_every_message_exactly_as_published(
    mosquitto: Mosquitto, city: str
) -> None:
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


async def test_ack_all_acknowledges_exactly_the_ids_given(mosquitto: Mosquitto, city: str) -> None:
    topic = f"ackall/{city}"
    first = await take(
        mosquitto, city, topic, ack_first=600, publisher=lambda: publish(mosquitto, topic, 900)
    )
    assert [p for _, p, _, _, _ in first] == [str(i).encode() for i in range(900)]
    again = await take(mosquitto, city, topic, ack_first=300)
    assert [p for _, p, _, _, _ in again] == [str(i).encode() for i in range(600, 900)]
    assert await take(mosquitto, city, topic, ack_first=0, idle=0.5) == []


async def test_a_paused_reader_delivers_nothing_until_resumed_then_the_rest_in_order(
    mosquitto: Mosquitto, city: str
) -> None:
    """Backpressure: paused from inside a delivery, in the middle of a read."""
    topic = f"pause/{city}"
    got: list[tuple[str, bytes, int, int, bool]] = []
    all_in = asyncio.Event()

    def on_message(*delivery: object) -> None:
        got.append(delivery)  # type: ignore[arg-type]
        if len(got) == 10:
            reader.pause()
        if len(got) == 500:
            all_in.set()

    c = client(mosquitto, city)
    reader = mqtt_ack.take_delivery(c, on_message)
    async with c:
        await c.subscribe(topic, qos=1)
        await asyncio.to_thread(publish, mosquitto, topic, 500)
        await asyncio.sleep(0.5)
        assert len(got) == 10, "nothing is delivered while paused"
        reader.resume()
        await asyncio.wait_for(all_in.wait(), 20)
        assert [p for _, p, _, _, _ in got] == [str(i).encode() for i in range(500)]
        assert mqtt_ack.ack_all(c, [mid for _, _, mid, _, _ in got])
        await mqtt_ack.settle(c, f"sync/{city}")


def publish_packet(topic: str, payload: bytes, mid: int, properties: bytes = b"\0") -> bytes:
    """An MQTT v5 QoS 1 PUBLISH, as a broker sends it."""
    name = topic.encode()
    body = len(name).to_bytes(2, "big") + name + mid.to_bytes(2, "big") + properties + payload
    length, size = b"", len(body)
    while True:
        byte, size = size % 128, size // 128
        length += bytes([byte | (0x80 if size else 0)])
        if not size:
            return b"\x32" + length + body


async def test_packets_split_anywhere_are_delivered_whole_and_in_order() -> None:
    """However the stream is cut into reads, each PUBLISH arrives once, exactly as sent; other
    packets (a PINGRESP here) still go to paho."""
    c = aiomqtt.Client("127.0.0.1", protocol=aiomqtt.ProtocolVersion.V5)
    got: list[tuple[str, bytes, int, int, bool]] = []
    mqtt_ack.take_delivery(c, lambda *delivery: got.append(delivery))
    inner = c._client
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    inner._sock = ours
    sent = [
        ("a/b", b"x" * 200, 1, b"\0"),
        ("città/✓", "pâté".encode(), 2, b"\x05\x02\x00\x00\x0e\x10"),  # expiry property
        ("big", bytes(range(256)) * 600, 3, b"\0"),  # 3-byte remaining length
        ("empty", b"", 4, b"\0"),
    ]
    stream = b"".join(publish_packet(t, p, m, props) for t, p, m, props in sent) + b"\xd0\x00"
    inner._ping_t = 1.0  # a PINGRESP clears it: proof it reached paho's handler
    for start in range(0, len(stream), 7):
        broker.sendall(stream[start : start + 7])
        assert inner.loop_read() == paho.MQTT_ERR_SUCCESS
    assert [(t, p, m, q) for t, p, m, q, _ in got] == [(t, p, m, 1) for t, p, m, _ in sent]
    assert inner._ping_t == 0
    broker.close()
    assert inner.loop_read() == paho.MQTT_ERR_CONN_LOST, "the broker's close is a lost connection"
