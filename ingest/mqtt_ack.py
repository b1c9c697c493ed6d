"""Manual MQTT acknowledgement for aiomqtt, the one place that reaches under its public API.

Two things the ingester needs that aiomqtt 2.x does not offer: acknowledging a message only
when we say so, and receiving messages in paho's callback rather than through aiomqtt's queue
(one asyncio queue hop and two wrapper objects per message cost more than validating it).

aiomqtt 2.x acknowledges a QoS 1 message as soon as it arrives. The ingester must acknowledge
only after InfluxDB has stored the message, so the broker redelivers anything we lose in a crash.
paho-mqtt, underneath aiomqtt, supports exactly that (``manual_ack_set`` / ``ack``); this module
wraps it so an aiomqtt upgrade that moves it breaks one tested place (``tests/test_mqtt_ack.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import aiomqtt
import paho.mqtt.client as paho


def _paho(client: aiomqtt.Client) -> paho.Client:
    inner = getattr(client, "_client", None)
    if not isinstance(inner, paho.Client):
        raise RuntimeError(
            "this aiomqtt version no longer exposes its paho client; pin aiomqtt<3 "
            "or update smartcity's ingest/mqtt_ack.py"
        )
    return inner


def deliver_directly(
    client: aiomqtt.Client, on_message: Callable[[paho.MQTTMessage], None]
) -> None:
    """Call before connecting: messages go to ``on_message`` in the event loop, not to
    ``client.messages`` (which then only tells when the connection drops)."""
    _paho(client).on_message = lambda _client, _userdata, message: on_message(message)


def enable_manual_ack(client: aiomqtt.Client) -> None:
    """Call before connecting: from now on nothing is acknowledged until :func:`ack`."""
    _paho(client).manual_ack_set(True)


def ack(client: aiomqtt.Client, mid: int, qos: int) -> bool:
    """Acknowledge one received message; False if the connection is gone (it will be resent)."""
    if qos == 0:
        return True
    return _paho(client).ack(mid, qos) == paho.MQTT_ERR_SUCCESS


async def settle(client: aiomqtt.Client, topic: str) -> None:
    """Return once the broker has processed every acknowledgement sent so far.

    Closing a socket that still has unread incoming data makes the kernel send a reset, and the
    broker then discards whatever it had not yet read from us, our last PUBACKs included (seen
    here: the final batch redelivered after a clean shutdown). The broker handles a
    connection's packets in order, so once it acknowledges this QoS 1 publish it has applied
    every PUBACK before it.
    """
    await client.publish(topic, b"", qos=1)
