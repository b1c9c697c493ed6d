"""The ingester's batching, spool and acknowledgement with a fake InfluxDB writer and a fake
MQTT connection: no servers, each test well under a second."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mqtt5
import pytest

from ingest.mqtt import Delivery, MqttError
from ingest.service import SYNC_TOPIC_PREFIX, Ingester
from ingest.settings import IngestSettings
from smartcity.contract import INGESTED_CHANNELS
from smartcity.influx import InfluxUnavailable, InfluxWriter

TOPIC = "smartcity/v1/cremona/wastebin/wb-{}/telemetry"
#: Recent readings: older ones would also carry late-window marks (smartcity.retention), which
#: the batching and acknowledgement tests here do not count.
START = datetime.now(UTC) - timedelta(minutes=30)


def reading(seq: int) -> bytes:
    return json.dumps({
        "v": 1, "zone": "Centro", "readings": [{
            "ts": (START + timedelta(seconds=seq)).isoformat(), "seq": seq, "fillingLevel": 0.5,
            "temperature": 11.0, "storedWasteKind": "plastic", "status": "ok",
            "batteryLevel": 0.7,
        }],
    }).encode()  # fmt: skip


class FakeWriter:
    """InfluxDB: ``gate`` holds writes back (slow), ``down`` fails them (away)."""

    def __init__(self) -> None:
        self.stored: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.down = False
        self.failing = False
        self.retries = 0

    async def ensure_database(self, keep_trying: Callable[[], bool]) -> None:
        return None

    async def write(self, lines: Sequence[str], keep_trying: Callable[[], bool]) -> list[object]:
        while self.down:
            self.failing = True
            if not keep_trying():
                raise InfluxUnavailable("down")
            self.retries += 1
            await asyncio.sleep(0.01)
        await self.gate.wait()
        self.failing = False
        self.stored.append(list(lines))
        return []

    async def aclose(self) -> None:
        return None

    def seqs(self) -> list[int]:
        return [
            int(s.split("seq=")[1].split("i")[0]) for b in self.stored for s in b if "seq=" in s
        ]


class FakeConnection:
    def __init__(self, on_message: Delivery) -> None:
        self.deliver = on_message
        self.acked: list[int] = []
        self.published: list[tuple[str, bytes]] = []
        self.filters: list[mqtt5.TopicFilter] = []
        self.paused = False
        self.ended = asyncio.Event()
        self.reason = ""

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def ack(self, mids: Sequence[int]) -> bool:
        if self.ended.is_set():
            return False
        self.acked.extend(mids)
        return True

    async def subscribe(self, filters: Sequence[mqtt5.TopicFilter]) -> list[int]:
        self.filters = list(filters)
        return [int(f.max_qos) for f in filters]

    async def unsubscribe(self, patterns: Sequence[str]) -> list[int]:
        return [17] * len(patterns)  # no subscription existed

    async def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        if self.ended.is_set():
            raise MqttError(self.reason)
        self.published.append((topic, payload))

    async def wait_closed(self) -> None:
        await self.ended.wait()
        raise MqttError(self.reason)

    async def disconnect(self) -> None:
        self.drop("disconnected by us")

    def drop(self, reason: str) -> None:
        self.reason = self.reason or reason
        self.ended.set()

    def send(self, first: int, last: int) -> None:
        """Messages with seq and message id ``first`` to ``last``, while not paused."""
        for i in range(first, last + 1):
            assert not self.paused, "delivered while paused"
            self.deliver(TOPIC.format(i % 7), reading(i), i, 1, False)


class FakeBroker:
    """The connection factory: each connect opens a new fake connection."""

    def __init__(self) -> None:
        self.connections: list[FakeConnection] = []

    async def __call__(self, on_message: Delivery) -> FakeConnection:
        self.connections.append(FakeConnection(on_message))
        return self.connections[-1]


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(20):
        while not condition():  # noqa: ASYNC110 (the fakes have no event to wait on)
            await asyncio.sleep(0.005)


@pytest.fixture
def settings(tmp_path: Path) -> IngestSettings:
    return IngestSettings(
        spool_dir=tmp_path / "spool", metrics_port=0, broker_stats=False, batch_size=10,
        max_pending_batches=2, ready_file=tmp_path / "ready", shutdown_grace=0,
    )  # fmt: skip


async def started(
    settings: IngestSettings,
) -> tuple[Ingester, FakeWriter, FakeBroker, asyncio.Task[None]]:
    writer, broker = FakeWriter(), FakeBroker()
    ing = Ingester(settings, writer=writer, connect=broker)  # type: ignore[arg-type]
    task = asyncio.create_task(ing.run())
    await until(lambda: bool(broker.connections and broker.connections[-1].filters))
    return ing, writer, broker, task


async def test_subscribes_at_qos_1_without_the_retain_flag_on_live_messages(
    settings: IngestSettings,
) -> None:
    ing, _, broker, task = await started(settings)
    filters = broker.connections[0].filters
    assert len(filters) == len(INGESTED_CHANNELS)
    assert {(int(f.max_qos), f.retain_as_published, int(f.retain_handling)) for f in filters} == {
        (1, False, 1)
    }
    assert settings.ready_file is not None
    assert settings.ready_file.exists()
    ing.stop()
    await task


async def test_a_message_is_acknowledged_only_once_its_batch_is_stored(
    settings: IngestSettings,
) -> None:
    ing, writer, broker, task = await started(settings)
    conn = broker.connections[0]
    writer.gate.clear()  # InfluxDB slow: the write is in flight
    conn.send(1, 10)  # one full batch
    await until(lambda: ing.pending.empty())  # the writer took it
    assert conn.acked == []
    writer.gate.set()
    await until(lambda: conn.acked == list(range(1, 11)))
    assert writer.seqs() == list(range(1, 11))
    ing.stop()
    await task


async def test_acknowledgements_for_a_dropped_connection_are_not_sent_on_the_next(
    settings: IngestSettings,
) -> None:
    ing, writer, broker, task = await started(settings)
    first = broker.connections[0]
    writer.gate.clear()
    first.send(1, 10)
    first.drop("connection lost: reset by peer")
    await until(lambda: len(broker.connections) == 2 and bool(broker.connections[1].filters))
    second = broker.connections[1]
    second.send(1, 10)  # the broker redelivers: same ids, new connection
    writer.gate.set()
    await until(lambda: second.acked == list(range(1, 11)))
    assert first.acked == []
    assert writer.seqs() == list(range(1, 11)) * 2, "stored twice: the same points, harmless"
    ing.stop()
    await task


async def test_a_slow_influxdb_pauses_receiving_at_max_pending_batches_then_resumes(
    settings: IngestSettings,
) -> None:
    ing, writer, broker, task = await started(settings)
    conn = broker.connections[0]
    writer.gate.clear()
    conn.send(1, 10)  # taken by the writer, which waits
    await until(lambda: ing.pending.empty())
    conn.send(11, 30)  # two more batches fill the queue
    assert conn.paused
    writer.gate.set()
    await until(lambda: not conn.paused)
    conn.send(31, 40)
    await until(lambda: len(conn.acked) == 40)
    assert writer.seqs() == list(range(1, 41))
    ing.stop()
    await task


async def test_while_influxdb_is_down_batches_go_to_the_spool_acknowledged_then_in_order(
    settings: IngestSettings,
) -> None:
    ing, writer, broker, task = await started(settings)
    conn = broker.connections[0]
    writer.down = True
    conn.send(1, 10)  # the writer retries this one
    await until(lambda: writer.retries > 0)
    conn.send(11, 60)  # two fill the queue, the other three go to disk
    assert not conn.paused, "InfluxDB away, not slow: keep receiving"
    assert ing.spool.depth == 3
    assert conn.acked == list(range(31, 61)), "spooled batches are acknowledged at once"
    writer.down = False
    await until(lambda: len(conn.acked) == 60)
    await until(lambda: ing.spool.depth == 0)
    assert writer.seqs() == list(range(1, 61)), "memory first, then the spool, in order"
    ing.stop()
    await task


async def test_stop_writes_and_acknowledges_everything_then_publishes_the_barrier(
    settings: IngestSettings,
) -> None:
    ing, writer, broker, task = await started(settings)
    conn = broker.connections[0]
    conn.send(1, 5)  # a part-full batch
    ing.stop()
    await task
    assert writer.seqs() == [1, 2, 3, 4, 5]
    assert conn.acked == [1, 2, 3, 4, 5]
    assert conn.published[-1] == (f"{SYNC_TOPIC_PREFIX}/{settings.client_id}", b"")
    assert conn.reason == "disconnected by us"
    assert settings.ready_file is not None
    assert not settings.ready_file.exists()


def test_the_default_writer_is_influxdbs(settings: IngestSettings) -> None:
    assert isinstance(Ingester(settings).influx, InfluxWriter)
