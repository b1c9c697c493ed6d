"""Manual acknowledgement and a fast receive path for aiomqtt: the one place under its public API.

Three things the ingester needs that aiomqtt 2.x does not offer:

* **Acknowledging a message only when we say so.** aiomqtt acknowledges a QoS 1 message as soon
  as it arrives; the ingester must acknowledge only after InfluxDB has stored it, so the broker
  redelivers anything a crash loses. paho-mqtt underneath supports that (``manual_ack_set`` /
  ``ack``); :func:`ack_all` sends a whole batch's PUBACKs in one socket write instead of one
  write per message.
* **Receiving in paho's read path rather than through aiomqtt's queue.** One asyncio queue hop
  and two wrapper objects per message cost more than validating it; and paho builds an MQTT v5
  ``Properties`` object per PUBLISH (about a third of its cost per message) that the ingester
  never reads. :func:`take_delivery` decodes each PUBLISH itself and hands topic and payload
  straight to a callback.
* **Reading many packets per wake-up.** paho reads a packet with three ``recv`` calls and aiomqtt
  handles one packet per event-loop wake-up. The socket is wrapped so ``recv`` is served from a
  read-ahead buffer and reports ``pending()`` bytes, which aiomqtt already honours (it does the
  same for TLS sockets): the loop keeps reading until the buffer is empty.

Everything here relies on paho 2.1–2.2 internals (``_sock``, ``_in_packet``, ``_handle_publish``,
``_packet_queue``), checked at start-up by :func:`_paho`; ``tests/test_mqtt_ack.py`` exercises each
against a real broker, so an upgrade that moves them fails there, not in production.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

import aiomqtt
import paho.mqtt.client as paho

#: topic, payload, message id, QoS, retain flag
Delivery = Callable[[str, bytes, int, int, bool], None]
_PUBACK = struct.Struct("!BBH")
_PUBACK_HEADER = 0x40  # PUBACK, remaining length 2: message id only, reason code 0 (success)
_INTERNALS = ("_sock", "_in_packet", "_protocol", "_handle_publish", "_packet_queue")
#: Bytes read from the socket at once; a 2,000-message backlog of small readings is ~400 KiB.
READ_AHEAD = 256 * 1024


def _paho(client: aiomqtt.Client) -> paho.Client:
    inner = getattr(client, "_client", None)
    if not isinstance(inner, paho.Client) or not all(hasattr(inner, a) for a in _INTERNALS):
        raise RuntimeError(
            "this aiomqtt/paho-mqtt version no longer has the internals smartcity's ingester "
            "uses; pin aiomqtt<3 and paho-mqtt<2.3, or update ingest/mqtt_ack.py"
        )
    return inner


def enable_manual_ack(client: aiomqtt.Client) -> None:
    """Call before connecting: from now on nothing is acknowledged until :func:`ack`."""
    _paho(client).manual_ack_set(True)


def take_delivery(client: aiomqtt.Client, on_message: Delivery) -> None:
    """Call before connecting: manual acknowledgement, and every PUBLISH straight to
    ``on_message`` in the event loop (``client.messages`` then only tells when the connection
    drops)."""
    inner = _paho(client)
    inner.manual_ack_set(True)
    slow_path = inner._handle_publish

    def handle_publish() -> paho.MQTTErrorCode:
        packet: bytearray = inner._in_packet["packet"]
        header: int = inner._in_packet["command"]
        qos = (header >> 1) & 3
        if qos == 2:  # never subscribed to; paho's own path does its two-step handshake
            return slow_path()
        end = 2 + ((packet[0] << 8) | packet[1])
        topic = packet[2:end].decode("utf-8", "backslashreplace")
        mid = 0
        if qos:
            mid = (packet[end] << 8) | packet[end + 1]
            end += 2
        if inner._protocol == paho.MQTTv5:
            end += _properties_size(packet, end)
        on_message(topic, bytes(memoryview(packet)[end:]), mid, qos, bool(header & 1))
        return paho.MQTTErrorCode.MQTT_ERR_SUCCESS

    inner._handle_publish = handle_publish  # type: ignore[method-assign]
    opened = inner.on_socket_open

    def on_socket_open(paho_client: paho.Client, userdata: Any, sock: Any) -> None:
        wrapped = ReadAheadSocket(sock)
        paho_client._sock = wrapped
        if opened is not None:
            opened(paho_client, userdata, wrapped)

    inner.on_socket_open = on_socket_open


def _properties_size(packet: bytearray, pos: int) -> int:
    """Bytes taken by an MQTT v5 property block (a variable byte integer length, then that)."""
    length = shift = 0
    start = pos
    while True:
        byte = packet[pos]
        pos += 1
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            return pos - start + length
        shift += 7
        if shift > 21:
            raise ValueError("malformed property length")


class ReadAheadSocket:
    """A socket whose ``recv`` is served from large reads, with ``pending()`` like an SSL socket.

    Everything but ``recv`` and ``pending`` goes to the wrapped socket (plain or TLS).
    """

    __slots__ = ("_buffer", "_pos", "_sock")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buffer = b""
        self._pos = 0

    def recv(self, size: int) -> bytes:
        pos = self._pos
        if pos >= len(self._buffer):
            data: bytes = self._sock.recv(max(size, READ_AHEAD))  # may raise BlockingIOError
            if len(data) <= size:
                return data  # including b"": the broker closed the connection
            self._buffer, pos = data, 0
        self._pos = pos + size
        return self._buffer[pos : pos + size]

    def pending(self) -> int:
        own = max(len(self._buffer) - self._pos, 0)
        inner = getattr(self._sock, "pending", None)
        return own + (inner() if inner is not None else 0)

    def send(self, data: bytes) -> int:
        sent: int = self._sock.send(data)
        return sent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def ack(client: aiomqtt.Client, mid: int, qos: int) -> bool:
    """Acknowledge one received message; False if the connection is gone (it will be resent)."""
    if qos == 0:
        return True
    return _paho(client).ack(mid, qos) == paho.MQTT_ERR_SUCCESS


def ack_all(client: aiomqtt.Client, mids: Sequence[int]) -> bool:
    """Acknowledge QoS 1 messages in one write; False if the connection is gone."""
    if not mids:
        return True
    inner = _paho(client)
    if inner._sock is None:
        return False
    packet = b"".join([_PUBACK.pack(_PUBACK_HEADER, 2, mid) for mid in mids])
    return inner._packet_queue(paho.PUBACK, packet, 0, 0) == paho.MQTT_ERR_SUCCESS


async def settle(client: aiomqtt.Client, topic: str) -> None:
    """Return once the broker has processed every acknowledgement sent so far.

    Closing a socket that still has unread incoming data makes the kernel send a reset, and the
    broker then discards whatever it had not yet read from us, our last PUBACKs included (seen
    here: the final batch redelivered after a clean shutdown). The broker handles a
    connection's packets in order, so once it acknowledges this QoS 1 publish it has applied
    every PUBACK before it.
    """
    await client.publish(topic, b"", qos=1)
