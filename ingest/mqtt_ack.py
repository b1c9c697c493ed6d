"""Manual acknowledgement and a fast receive path for aiomqtt: the one place under its public API.

Three things the ingester needs that aiomqtt 2.x does not offer:

* **Acknowledging a message only when we say so.** aiomqtt acknowledges a QoS 1 message as soon
  as it arrives; the ingester must acknowledge only after InfluxDB has stored it, so the broker
  redelivers anything a crash loses. paho-mqtt underneath supports that (``manual_ack_set``);
  :func:`ack_all` then sends a whole batch's PUBACKs in one socket write, where paho's ``ack``
  would make one write per message.
* **Receiving without paho's per-message machinery.** aiomqtt's queue costs an asyncio hop and two
  wrapper objects per message; paho reads a packet with three ``recv`` calls, handles one packet
  per event-loop wake-up and builds an MQTT v5 ``Properties`` object per PUBLISH that the
  ingester never reads. :func:`take_delivery` gives the client a ``loop_read`` that reads up to
  :data:`READ_AHEAD` bytes at once, cuts them into packets, and hands each PUBLISH's topic and
  payload straight to a callback; every other packet goes to paho's own handlers as before.
  After a small read it lets the stream gather for a few milliseconds before reading again.

Everything here relies on paho 2.2 internals (``_sock``, ``_in_packet``, ``_packet_handle``,
``_loop_rc_handle``, ``_packet_queue``; the ``ingest`` extra pins paho), checked at start-up by
:func:`_paho`; ``tests/test_mqtt_ack.py`` exercises each against a real broker, so an upgrade
that moves them fails there, not in production.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.exception import MalformedPacket

#: topic, payload, message id, QoS, retain flag
Delivery = Callable[[str, bytes, int, int, bool], None]
_PUBACK = struct.Struct("!BBH")
_PUBACK_HEADER = 0x40  # PUBACK, remaining length 2: message id only, reason code 0 (success)
_INTERNALS = (
    "_sock", "_in_packet", "_protocol", "_msgtime_mutex", "_packet_handle", "_loop_rc_handle",
    "_packet_queue", "_call_socket_register_write",
)  # fmt: skip
#: Most bytes read from the socket at once: about a thousand small readings.
READ_AHEAD = 256 * 1024
#: After a read smaller than this, let the stream gather for COALESCE_WAIT seconds.
COALESCE_BELOW = 64 * 1024
COALESCE_WAIT = 0.005


def _paho(client: aiomqtt.Client) -> paho.Client:
    inner = getattr(client, "_client", None)
    if not isinstance(inner, paho.Client) or not all(hasattr(inner, a) for a in _INTERNALS):
        raise RuntimeError(
            "this aiomqtt/paho-mqtt version no longer has the internals smartcity's ingester "
            "uses; pin aiomqtt<3 and paho-mqtt<2.3, or update ingest/mqtt_ack.py"
        )
    return inner


def take_delivery(client: aiomqtt.Client, on_message: Delivery) -> PacketReader:
    """Call before connecting: manual acknowledgement, and every PUBLISH straight to
    ``on_message`` in the event loop (``client.messages`` then only tells when the connection
    drops). The returned reader can :meth:`~PacketReader.pause` receiving."""
    inner = _paho(client)
    inner.manual_ack_set(True)
    loop = asyncio.get_running_loop()
    reader = PacketReader(inner, on_message, loop)
    inner.loop_read = reader.loop_read  # type: ignore[method-assign]
    opened = inner.on_socket_open

    def on_socket_open(paho_client: paho.Client, userdata: Any, sock: Any) -> None:
        reader.buffer.clear()  # a new connection starts at a packet boundary
        if opened is not None:
            opened(paho_client, userdata, sock)  # aiomqtt: its reader, keepalive task
        # paho calls this from aiomqtt's connect thread; after aiomqtt's add_reader, ours
        # replaces its reader callback for the socket
        loop.call_soon_threadsafe(reader.watch, sock)

    inner.on_socket_open = on_socket_open
    return reader


class PacketReader:
    """Reads what the socket has, delivers each complete PUBLISH, keeps the partial rest.

    After a small read it stops watching the socket for :data:`COALESCE_WAIT` seconds, so a
    steady stream is read in chunks of many messages rather than woken for each one (measured:
    a fifth less CPU per message when the ingester keeps up with the stream, which is when it
    would otherwise wake for every packet).
    """

    def __init__(
        self, inner: paho.Client, on_message: Delivery, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.inner = inner
        self.on_message = on_message
        self.loop = loop
        self.buffer = bytearray()
        self.last_read = 0
        self.paused = False

    def pause(self) -> None:
        """Stop delivering, from the next packet on: the rest waits in our buffer, the socket,
        then the broker's queue.

        For backpressure while the consumer is behind. Paho's keepalive still runs, so a pause
        longer than about two keepalive intervals ends in a reconnect, and unacknowledged
        messages come again: nothing is lost either way.
        """
        self.paused = True
        sock = self.inner._sock
        if sock is not None:
            self.loop.remove_reader(sock.fileno())

    def resume(self) -> None:
        sock = self.inner._sock
        if self.paused:
            self.paused = False
            if sock is not None:
                self.loop.call_soon(self._continue, sock)

    def _continue(self, sock: Any) -> None:
        """After a pause: the packets left in the buffer first, then the socket again."""
        if self.paused or self.inner._sock is not sock:
            return
        if self.buffer and self._deliver() != paho.MQTTErrorCode.MQTT_ERR_SUCCESS:
            return
        if not self.paused:
            self.watch(sock)
            # a TLS socket may already hold decrypted bytes: the selector would not wake
            self._readable(sock)

    def watch(self, sock: Any) -> None:
        """Read ``sock`` whenever it is readable, unless it is no longer the connection's."""
        if self.inner._sock is not sock:
            return
        if self.paused:  # also takes aiomqtt's reader off a new connection's socket
            self.loop.remove_reader(sock.fileno())
        else:
            self.loop.add_reader(sock.fileno(), self._readable, sock)

    def _readable(self, sock: Any) -> None:
        got = 0
        while not self.paused:
            self.loop_read()
            got += self.last_read
            # a TLS socket may hold decrypted bytes the selector cannot see (as aiomqtt does)
            if self.inner._sock is not sock or not getattr(sock, "pending", lambda: 0)():
                break
        if self.inner._sock is sock and not self.paused and 0 < got < COALESCE_BELOW:
            self.loop.remove_reader(sock.fileno())
            self.loop.call_later(COALESCE_WAIT, self.watch, sock)

    def loop_read(self, max_packets: int = 1) -> paho.MQTTErrorCode:
        """paho's ``loop_read``, reading everything available at once (ours, and aiomqtt's
        reader callback until ours replaces it, call it)."""
        inner = self.inner
        sock = inner._sock
        if sock is None:
            return paho.MQTTErrorCode.MQTT_ERR_NO_CONN
        self.last_read = 0
        try:
            data = sock.recv(READ_AHEAD)
        except (BlockingIOError, ssl.SSLWantReadError):
            return paho.MQTTErrorCode.MQTT_ERR_SUCCESS
        except ssl.SSLWantWriteError:
            inner._call_socket_register_write()
            return paho.MQTTErrorCode.MQTT_ERR_SUCCESS
        except OSError:
            data = b""
        if not data:
            self.buffer.clear()
            return inner._loop_rc_handle(paho.MQTTErrorCode.MQTT_ERR_CONN_LOST)
        self.last_read = len(data)
        with inner._msgtime_mutex:
            inner._last_bytes_received = time.monotonic()
        self.buffer += data
        return self._deliver()

    def _deliver(self) -> paho.MQTTErrorCode:
        """Handle the complete packets in the buffer, up to a pause; keep the rest."""
        try:
            rc = self._packets(self.buffer)
        except (IndexError, ValueError, UnicodeDecodeError):
            rc = paho.MQTTErrorCode.MQTT_ERR_PROTOCOL
        if rc != paho.MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.buffer.clear()
            return self.inner._loop_rc_handle(rc)
        return rc

    def _packets(self, buffer: bytearray) -> paho.MQTTErrorCode:
        size = len(buffer)
        pos = 0
        rc = paho.MQTTErrorCode.MQTT_ERR_SUCCESS
        while pos + 2 <= size and not self.paused:
            header = buffer[pos]
            # the fixed header's remaining length: a variable byte integer, at most 4 bytes
            length = shift = 0
            body = pos + 1
            while True:
                if body >= size:
                    del buffer[:pos]
                    return rc
                byte = buffer[body]
                body += 1
                length |= (byte & 0x7F) << shift
                if byte < 0x80:
                    break
                shift += 7
                if shift > 21:
                    return paho.MQTTErrorCode.MQTT_ERR_PROTOCOL
            end = body + length
            if end > size:
                break
            if header & 0xF0 == paho.PUBLISH and header & 0x06 != 0x04:
                self._publish(header, buffer, body, end)
            else:
                rc = self._other(header, length, buffer[body:end])
                if rc != paho.MQTTErrorCode.MQTT_ERR_SUCCESS:
                    return rc
            pos = end
        del buffer[:pos]
        return rc

    def _publish(self, header: int, buffer: bytearray, pos: int, end: int) -> None:
        """A QoS 0 or 1 PUBLISH (QoS 2 goes to paho for its two-step handshake)."""
        topic_end = pos + 2 + ((buffer[pos] << 8) | buffer[pos + 1])
        topic = buffer[pos + 2 : topic_end].decode("utf-8", "backslashreplace")
        qos = (header >> 1) & 3
        mid = 0
        if qos:
            mid = (buffer[topic_end] << 8) | buffer[topic_end + 1]
            topic_end += 2
        if self.inner._protocol == paho.MQTTv5:
            topic_end += _properties_size(buffer, topic_end)
        self.on_message(topic, bytes(buffer[topic_end:end]), mid, qos, bool(header & 1))

    def _other(self, header: int, length: int, body: bytearray) -> paho.MQTTErrorCode:
        """Any other packet, handled by paho exactly as its own reader would."""
        inner = self.inner
        inner._in_packet = {
            "command": header,
            "have_remaining": 1,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": length,
            "packet": body,
            "to_process": 0,
            "pos": 0,
        }
        try:
            rc: paho.MQTTErrorCode = inner._packet_handle()
        except MalformedPacket:
            rc = paho.MQTTErrorCode.MQTT_ERR_PROTOCOL
        inner._in_packet = {
            "command": 0,
            "have_remaining": 0,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": 0,
            "packet": bytearray(),
            "to_process": 0,
            "pos": 0,
        }
        return rc


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
