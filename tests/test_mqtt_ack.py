"""The one place that reaches under aiomqtt: manual acknowledgement, against a real broker."""

from __future__ import annotations

import asyncio

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest import mqtt_ack
from smartcity.servers import Mosquitto


def client(broker: Mosquitto, name: str) -> aiomqtt.Client:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 600
    c = aiomqtt.Client(
        broker.host, broker.port, identifier=name, protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False, properties=props,
    )  # fmt: skip
    mqtt_ack.enable_manual_ack(c)
    return c


async def receive(
    broker: Mosquitto, name: str, topic: str, ack: int, idle: float = 1.0
) -> list[bytes]:
    """Receive until idle; acknowledge the first ``ack`` messages, then settle and leave."""
    got: list[tuple[int, bytes]] = []
    async with client(broker, name) as c:
        await c.subscribe(topic, qos=1)
        try:
            async with asyncio.timeout(idle):
                async for m in c.messages:
                    got.append((m.mid, bytes(m.payload)))  # type: ignore[arg-type]
        except TimeoutError:
            pass
        for mid, _ in got[:ack]:
            assert mqtt_ack.ack(c, mid, 1)
        await mqtt_ack.settle(c, f"sync/{name}")
    return [p for _, p in got]


def publish(broker: Mosquitto, topic: str, n: int) -> None:
    p = paho.Client(CallbackAPIVersion.VERSION2)
    p.connect(broker.host, broker.port)
    p.loop_start()
    for i in range(n):
        p.publish(topic, str(i).encode(), qos=1).wait_for_publish(10)
    p.disconnect()
    p.loop_stop()


async def test_unacknowledged_messages_come_back_and_acknowledged_ones_do_not(
    mosquitto: Mosquitto, city: str
) -> None:
    topic = f"acktest/{city}"
    await receive(mosquitto, city, topic, ack=0, idle=0.3)  # create the session
    publish(mosquitto, topic, 100)
    first = await receive(mosquitto, city, topic, ack=60)
    assert len(first) == 100
    again = await receive(mosquitto, city, topic, ack=100)
    assert again == first[60:], "exactly the 40 unacknowledged messages are resent, in order"
    assert await receive(mosquitto, city, topic, ack=0, idle=0.5) == []
