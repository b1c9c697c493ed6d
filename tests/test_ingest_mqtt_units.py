"""The ingester's MQTT connection fed bytes directly, no server: framing, hostile packets,
pausing, what it writes."""

from __future__ import annotations

import asyncio

import mqtt5
import pytest

from ingest.mqtt import MqttConnection, MqttError, MqttOptions

Got = list[tuple[str, bytes, int, int, bool]]


class FakeTransport(asyncio.Transport):
    """Records what the connection writes and whether it reads; closing ends the connection."""

    def __init__(self, protocol: MqttConnection) -> None:
        super().__init__()
        self.protocol = protocol
        self.written = bytearray()
        self.reading = True
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closing, "a write after close"
        self.written += data

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def packets(self) -> list[mqtt5.Packet]:
        out, view, pos = [], memoryview(bytes(self.written)), 0
        while pos < len(view):
            packet, used = mqtt5.read(view[pos:])
            out.append(packet)
            pos += used
        return out


def opened(got: Got, **extra: object) -> tuple[MqttConnection, FakeTransport]:
    options = MqttOptions("broker", 1883, "ingest-1", session_expiry=86_400, **extra)  # type: ignore[arg-type]
    c = MqttConnection(options, lambda *d: got.append(d))  # type: ignore[arg-type]
    t = FakeTransport(c)
    c.connection_made(t)
    return c, t


def publish(topic: str, payload: bytes, mid: int, qos: int = 1, **props: object) -> bytes:
    return mqtt5.PublishPacket(
        topic, payload, qos=mqtt5.QoS(qos), packet_id=mid if qos else None, **props
    ).write()


async def test_connect_asks_for_a_persistent_session_with_our_receive_maximum() -> None:
    _, t = opened([], username="ingest", password="s3cret", receive_maximum=500, keepalive=30)
    [connect] = t.packets()
    assert isinstance(connect, mqtt5.ConnectPacket)
    assert (connect.client_id, connect.clean_start, connect.session_expiry_interval) == (
        "ingest-1", False, 86_400,
    )  # fmt: skip
    assert (connect.receive_max, connect.keep_alive, connect.topic_alias_max) == (500, 30, 0)
    assert (connect.username, connect.password) == ("ingest", b"s3cret")


async def test_packets_split_anywhere_are_delivered_whole_and_in_order() -> None:
    """However the stream is cut into reads, each PUBLISH arrives once, exactly as sent."""
    sent = [
        ("a/b", b"x" * 200, 1, {}),
        ("città/✓", "pâté".encode(), 2, {"message_expiry_interval": 3600}),
        ("big", bytes(range(256)) * 600, 3, {"user_properties": [("k", "v" * 300)]}),
        ("empty", b"", 4, {}),
    ]
    stream = b"".join(publish(tp, p, m, **props) for tp, p, m, props in sent)
    stream = mqtt5.ConnAckPacket(session_present=True).write() + stream
    stream += mqtt5.PingRespPacket().write() + publish("q0", b"zero", 0, qos=0)
    for step in (1, 7, 1000, len(stream)):
        got: Got = []
        c, t = opened(got)
        for start in range(0, len(stream), step):
            c.data_received(stream[start : start + step])
        want = [(tp, p, m, 1, False) for tp, p, m, _ in sent]
        assert got == [*want, ("q0", b"zero", 0, 0, False)]
        assert c.connack.result().session_present
        assert not t.closing


@pytest.mark.parametrize(
    ("stream", "reason", "code"),
    [
        # a topic length running past the packet's end
        (b"\x32\x04\x00\x64\x00\x01" + b"x" * 200, "malformed", 0x81),
        # a remaining length longer than four bytes
        (b"\x30\x80\x80\x80\x80\x01", "malformed", 0x81),
        # a property length running past the packet's end
        (bytes([0x32, 6, 0, 1, 0x61, 0, 1, 50]) + b"\0" * 60, "malformed", 0x81),
        # QoS 3 does not exist
        (bytes([0x36, 6, 0, 1, 0x61, 0, 1, 0]), "malformed", 0x81),
        # a topic that is not UTF-8: mqtt5 0.8 panics on it, and leaves Python an unraisable
        # UnicodeDecodeError on stderr besides (Mosquitto refuses such a topic before us)
        pytest.param(
            bytes([0x32, 6, 0, 1, 0xFF, 0, 1, 0]),
            "malformed",
            0x81,
            marks=pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
        ),
        # QoS 2 although we subscribe at QoS 1 at most
        (publish("a/b", b"two", 9, qos=2), "QoS 2", 0x82),
        # a topic alias, which our CONNECT allows none of
        (mqtt5.PublishPacket("", b"x", topic_alias=1).write(), "topic alias", 0x94),
        # a packet only a client sends
        (mqtt5.SubscribePacket(1, [mqtt5.TopicFilter("x")]).write(), "unexpected SUBSCRIBE", 0x82),
    ],
)
async def test_a_hostile_packet_closes_the_connection_with_a_reason_and_delivers_nothing_more(
    stream: bytes, reason: str, code: int
) -> None:
    got: Got = []
    c, t = opened(got)
    t.written.clear()
    c.data_received(publish("good", b"before", 1) + stream + publish("good", b"after", 2))
    assert got == [("good", b"before", 1, 1, False)]
    assert t.closing
    [disconnect] = t.packets()
    assert isinstance(disconnect, mqtt5.DisconnectPacket)
    assert int(disconnect.reason_code) == code
    c.data_received(publish("good", b"later", 3))
    assert len(got) == 1, "nothing is delivered once closing"
    with pytest.raises(MqttError, match=reason):
        await c.wait_closed()


async def test_the_brokers_disconnect_ends_the_connection_with_its_reason() -> None:
    c, t = opened([])
    t.written.clear()
    c.data_received(
        mqtt5.DisconnectPacket(
            reason_code=mqtt5.DisconnectReasonCode.SESSION_TAKEN_OVER, reason_str="replaced"
        ).write()
    )
    assert t.written == b"", "no DISCONNECT answers the broker's"
    with pytest.raises(MqttError, match="SESSION_TAKEN_OVER: replaced"):
        await c.wait_closed()


async def test_pause_inside_a_delivery_holds_the_rest_until_resume() -> None:
    got: Got = []

    def on_message(*delivery: object) -> None:
        got.append(delivery)  # type: ignore[arg-type]
        if len(got) == 3:
            c.pause()

    c, t = opened([])
    c.on_message = on_message
    c.data_received(b"".join(publish("t", str(i).encode(), i + 1) for i in range(10)))
    assert len(got) == 3
    assert not t.reading
    c.data_received(publish("t", b"10", 11))  # bytes a transport read before it paused
    await asyncio.sleep(0.05)
    assert len(got) == 3, "nothing is delivered while paused"
    c.resume()
    await asyncio.sleep(0)
    assert [p for _, p, _, _, _ in got] == [str(i).encode() for i in range(11)]
    await asyncio.sleep(0.02)  # past the coalescing wait
    assert t.reading


async def test_ack_writes_one_puback_per_id_in_one_write_and_fails_once_closed() -> None:
    c, t = opened([])
    t.written.clear()
    assert c.ack([5, 65_535, 1])
    assert bytes(t.written) == b"\x40\x02\x00\x05\x40\x02\xff\xff\x40\x02\x00\x01"
    assert c.ack([])
    c.close("test")
    assert not c.ack([6])


async def test_publish_subscribe_and_unsubscribe_wait_for_their_answers() -> None:
    c, t = opened([])
    t.written.clear()
    pub = asyncio.create_task(c.publish("smartcity/v1/deadletter", b"{}", qos=1))
    await asyncio.sleep(0)
    [sent] = t.packets()
    assert isinstance(sent, mqtt5.PublishPacket)
    assert (sent.topic, sent.qos, sent.payload) == ("smartcity/v1/deadletter", 1, b"{}")
    assert not pub.done()
    c.data_received(mqtt5.PubAckPacket(sent.packet_id).write())
    await pub
    t.written.clear()
    sub = asyncio.create_task(c.subscribe([mqtt5.TopicFilter("a/#", max_qos=mqtt5.QoS(1))]))
    await asyncio.sleep(0)
    [subscribe] = t.packets()
    assert isinstance(subscribe, mqtt5.SubscribePacket)
    assert subscribe.packet_id != sent.packet_id
    c.data_received(mqtt5.SubAckPacket(subscribe.packet_id, [mqtt5.SubAckReasonCode(1)]).write())
    assert await sub == [1]
    t.written.clear()
    unsub = asyncio.create_task(c.unsubscribe(["a/#", "b/#"]))
    await asyncio.sleep(0)
    [unsubscribe] = t.packets()
    assert isinstance(unsubscribe, mqtt5.UnsubscribePacket)
    assert unsubscribe.patterns == ["a/#", "b/#"]
    codes = [mqtt5.UnsubAckReasonCode(0), mqtt5.UnsubAckReasonCode(17)]
    c.data_received(mqtt5.UnsubAckPacket(unsubscribe.packet_id, codes).write())
    assert await unsub == [0, 17]


async def test_a_lost_connection_fails_what_waits_on_it() -> None:
    c, _ = opened([])
    pub = asyncio.create_task(c.publish("x", b"", qos=1))
    await asyncio.sleep(0)
    c.connection_lost(ConnectionResetError("reset by peer"))
    with pytest.raises(MqttError, match="reset by peer"):
        await pub
    with pytest.raises(MqttError, match="reset by peer"):
        await c.publish("x", b"", qos=1)


async def written(t: FakeTransport, n: int) -> list[mqtt5.Packet]:
    """The packets written, once there are ``n`` of them."""
    async with asyncio.timeout(30):
        while len(t.packets()) < n:  # noqa: ASYNC110 (the fake transport has no event to wait on)
            await asyncio.sleep(0.05)
    return t.packets()


async def test_keepalive_pings_on_its_timer_and_gives_up_on_a_silent_broker() -> None:
    c, t = opened([], keepalive=1)
    c.start_keepalive(None)
    assert (await written(t, 2))[1] == mqtt5.PingReqPacket()
    with pytest.raises(MqttError, match="nothing from the broker"):
        await asyncio.wait_for(c.wait_closed(), 30)


async def test_a_paused_connection_keeps_pinging_and_is_not_declared_dead() -> None:
    """A silent broker is given up after one keepalive (two ticks); paused, we read nothing,
    so silence means nothing and the pings go on."""
    c, t = opened([], keepalive=1)
    c.start_keepalive(None)
    c.pause()
    assert (await written(t, 5))[1:] == [mqtt5.PingReqPacket()] * 4
    assert not t.closing
    c.close("test")


async def test_a_failing_delivery_closes_the_connection_instead_of_escaping() -> None:
    """Found after a pause too (from a callback, where asyncio would only log it)."""

    def on_message(*delivery: object) -> None:
        raise RuntimeError("a bug")

    c, t = opened([])
    c.on_message = on_message
    c.pause()
    c.data_received(publish("t", b"x", 1))
    c.resume()
    with pytest.raises(MqttError, match="handling a packet failed: RuntimeError"):
        await c.wait_closed()
    assert isinstance(t.packets()[-1], mqtt5.DisconnectPacket)


async def test_while_paused_our_own_puback_is_still_read_and_deliveries_wait_in_order() -> None:
    """The writer publishes a dead-letter and awaits its PUBACK while receiving is paused for
    backpressure: the PUBACK is read, the deliveries around it wait for the resume."""
    got: Got = []
    c, t = opened(got)
    c.data_received(publish("t", b"0", 1))
    c.pause()
    c.data_received(publish("t", b"1", 2))  # read before the transport paused
    assert not t.reading
    t.written.clear()
    pub = asyncio.create_task(c.publish("smartcity/v1/deadletter", b"{}", qos=1))
    await asyncio.sleep(0)
    assert t.reading, "reading again for the PUBACK"
    [sent] = t.packets()
    assert isinstance(sent, mqtt5.PublishPacket)
    puback = mqtt5.PubAckPacket(sent.packet_id).write()
    tail = publish("t", b"4", 5)
    c.data_received(publish("t", b"2", 3) + puback + publish("t", b"3", 4) + tail[:1])
    await pub
    assert not t.reading, "paused again once answered"
    assert [p for _, p, _, _, _ in got] == [b"0"]
    c.data_received(tail[1:])  # the rest of the partial packet
    c.resume()
    await asyncio.sleep(0)
    assert [p for _, p, _, _, _ in got] == [b"0", b"1", b"2", b"3", b"4"]
