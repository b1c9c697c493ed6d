"""End to end on real servers: simulator -> Mosquitto -> ingester -> InfluxDB, counted exactly."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.convert import DEADLETTER_PAYLOAD_BYTES
from simulators.fleet import build_fleet, schedule
from simulators.publisher import AckingPublisher
from smartcity.contract import topic
from smartcity.devices import DEVICE_TYPES
from stack.servers import Mosquitto

from .conftest import (
    DeadLetterWatcher,
    Influx,
    IngesterProcess,
    run_smartcity,
    smartcity_env,
    stopped_counts,
)

START = datetime(2026, 11, 20, 16, 0, tzinfo=UTC)
MEASUREMENTS = ", ".join(f'"{t.measurement()}"' for t in DEVICE_TYPES.values())
FLEET = {"streetlight": 30, "wastebin": 20, "evcharger": 6, "airquality": 4}


def expected_per_type(seed: int, messages: int) -> Counter[str]:
    """What the simulator will send, worked out from its own schedule (not hard-coded)."""
    fleet = build_fleet(seed, FLEET)
    sched = schedule(fleet, START)
    return Counter(next(sched)[1].device_type.name for _ in range(messages))


def test_seeded_fleet_lands_exactly_per_device_type(
    mosquitto, influx: Influx, ingester: IngesterProcess, city: str
) -> None:
    n = 3000
    result = run_smartcity(
        "simulate", "--fleet", ",".join(f"{t}={n}" for t, n in FLEET.items()), "--seed", "7",
        "--messages", str(n), "--speed", "0", "--start", START.isoformat(), "--no-progress",
        env=smartcity_env(mosquitto.url, influx, city),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected = expected_per_type(7, n)
    assert sum(expected.values()) == n
    for measurement, count in expected.items():
        assert influx.wait_for_count(measurement, count) == count, measurement
    # no gaps and no doubles: per device, seq runs from its first to its last with none missing
    rows = influx.query(
        'SELECT count("seq"), min("seq"), max("seq") FROM "streetlight" GROUP BY "device_id"'
    )
    assert len(rows) == 30
    for r in rows:
        assert r["count"] == r["max"] - r["min"] + 1  # type: ignore[operator]
    # derived rows carry no seq, so count(seq) is the number of readings
    assert influx.count("evcharger_connector", "power") >= expected["evcharger"]
    assert influx.count("device_status", "state") == sum(FLEET.values())


def test_same_seed_same_messages_different_seed_different() -> None:
    def messages(seed: int) -> list[bytes]:
        from smartcity.contract import encode_telemetry

        fleet = build_fleet(seed, FLEET)
        out = []
        for (due, dev), _ in zip(schedule(fleet, START), range(500), strict=False):
            reading, _events = dev.read(due)
            out.append(encode_telemetry([reading], dev.placement.zone))
        return out

    assert messages(11) == messages(11)
    assert messages(11) != messages(12)


def good_reading(seq: int, ts: datetime) -> bytes:
    return json.dumps({
        "v": 1, "zone": "Centro", "readings": [{
            "ts": ts.isoformat(), "seq": seq, "fillingLevel": 0.5, "temperature": 11.0,
            "storedWasteKind": "plastic", "status": "ok", "batteryLevel": 0.7,
        }],
    }).encode()  # fmt: skip


BAD = [
    ("wastebin", "wb-1", "telemetry", b"not json at all"),
    ("wastebin", "wb-1", "telemetry", b'{"v":1,"readings":[{"ts":"2026-01-01T00:00:00Z",'
     b'"seq":1}]}'),
    ("wastebin", "wb-1", "telemetry", b'{"v":1,"readings":[{"ts":"2099-01-01T00:00:00Z","seq":1,'
     b'"fillingLevel":0.5,"temperature":11.0,"storedWasteKind":"plastic","status":"ok","batteryLevel":0.7}]}'),
    ("toaster", "t-1", "telemetry", b'{"v":1}'),
    ("wastebin", "wb-1", "telemetry", "quote \" backslash \\ newline \n unicode 🙂 , = ".encode()),
    ("wastebin", "wb-1", "telemetry", b"\xff\xfe\x00binary"),
    ("wastebin", "wb-1", "telemetry", b"x" * (300 * 1024)),
]  # fmt: skip


def test_good_messages_around_bad_ones_are_all_stored_and_bad_ones_dead_lettered(
    mosquitto, influx: Influx, ingester: IngesterProcess, city: str
) -> None:
    watcher = DeadLetterWatcher(mosquitto)
    pub = AckingPublisher(mosquitto.url, f"pub-{city}")
    pub.connect()
    t0 = datetime.now(UTC) - timedelta(minutes=10)
    good = 0
    for i in range(200):
        pub.publish(
            topic("wastebin", "wb-1", "telemetry", city), good_reading(i, t0 + timedelta(seconds=i))
        )
        good += 1
        if i % 25 == 0:
            dtype, dev, channel, payload = BAD[(i // 25) % len(BAD)]
            pub.publish(topic(dtype, dev, channel, city), payload)  # type: ignore[arg-type]
    # a hostile topic too: line-protocol syntax in the device id (Mosquitto itself refuses
    # control characters such as newlines in topics, so those never reach us)
    pub.publish(f'smartcity/v1/{city}/wastebin/evil id,x=1 f="2"\\/telemetry', good_reading(0, t0))
    assert pub.drain(30)
    pub.close()
    bad_sent = 8 + 1

    assert influx.wait_for_count("wastebin", good) == good
    assert influx.wait_for_count("deadletter", bad_sent, field="reason") == bad_sent
    rows = influx.query(
        'SELECT "reason", "topic", "payload", "payload_bytes", "reason_code" FROM "deadletter"'
    )
    assert all(r["reason"] for r in rows)
    codes = Counter(r["reason_code"] for r in rows)
    assert codes["bad_json"] >= 3
    assert codes["too_large"] == 1
    assert codes["unknown_device_type"] == 1
    assert codes["bad_device_id"] == 1
    hostile = next(r for r in rows if "🙂" in str(r["payload"]))
    assert hostile["payload"] == 'quote " backslash \\ newline \n unicode 🙂 , = '
    evil = next(r for r in rows if r["reason_code"] == "bad_device_id")
    assert evil["topic"] == f'smartcity/v1/{city}/wastebin/evil id,x=1 f="2"\\/telemetry'

    mine = watcher.wait_for(bad_sent, city)
    assert len(mine) == bad_sent
    assert all(d["reason"] and d["code"] for d in mine)
    binary = next(d for d in mine if d["payload_encoding"] == "base64")
    assert binary["code"] == "bad_json"
    assert ingester.proc is not None
    assert ingester.proc.poll() is None, "ingester must not crash"


#: The README's example, as written: --speed 0 given, not only implied by --messages.
README_EXAMPLE = ("--fleet", "streetlight=500,wastebin=200,airquality=20", "--seed", "7",
                  "--speed", "0")  # fmt: skip


@pytest.mark.parametrize(
    ("n", "extra"),
    [(4000, ()), (20_000, ()), (20_000, README_EXAMPLE)],  # 20,000: the done-when
)
def test_messages_alone_publishes_history_fast_and_lands_exactly(
    mosquitto, influx: Influx, ingester: IngesterProcess, city: str, n: int, extra: tuple[str, ...]
) -> None:
    """`smartcity simulate --messages N` (at speed 0): N readings, all in the past."""
    result = run_smartcity(
        "simulate", "--messages", str(n), *extra, "--no-progress",
        env=smartcity_env(mosquitto.url, influx, city), timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert settled_total(influx, n) == n


def settled_total(influx: Influx, n: int, timeout: float = 60) -> int:
    """Readings of every type stored, once ``n`` are there (or time is up), and a moment more
    for any extra to show."""

    def total() -> int:
        rows = influx.query(f'SELECT count("seq") FROM {MEASUREMENTS}')
        return sum(int(r["count"]) for r in rows)  # type: ignore[call-overload]

    deadline = time.monotonic() + timeout
    while total() < n and time.monotonic() < deadline:
        time.sleep(0.3)
    time.sleep(0.5)
    return total()


def retained_statuses(broker: Mosquitto, city: str, expected: int) -> dict[str, bytes]:
    """Every retained status of ``city`` on the broker, once ``expected`` of them arrived."""
    got: dict[str, bytes] = {}
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"retained-{time.monotonic_ns()}")
    client.on_message = lambda c, u, m: got.__setitem__(m.topic, m.payload)
    client.connect(broker.host, broker.port)
    client.subscribe(topic("+", "+", "status", city), qos=1)
    deadline = time.monotonic() + 30
    while len(got) < expected and time.monotonic() < deadline:
        client.loop(timeout=0.1)
    client.loop(timeout=0.5)  # and any more than expected
    client.disconnect()
    return got


def test_a_second_fleet_with_an_id_prefix_leaves_the_first_alone(
    mosquitto: Mosquitto, influx: Influx, ingester: IngesterProcess, city: str
) -> None:
    env = smartcity_env(mosquitto.url, influx, city)
    fleet = ("--streetlights", "4", "--bins", "3", "--chargers", "2", "--fleet", "airquality=2",
             "--no-progress")  # fmt: skip
    first = run_smartcity("simulate", *fleet, "--messages", "30", env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    before = retained_statuses(mosquitto, city, 11)
    assert len(before) == 11
    second = run_smartcity(
        "simulate", *fleet, "--messages", "30", "--id-prefix", "b2-", env=env, timeout=120
    )
    assert second.returncode == 0, second.stderr
    after = retained_statuses(mosquitto, city, 22)
    assert {t: p for t, p in after.items() if t in before} == before, "first fleet's changed"
    new = {t.split("/")[4] for t in after.keys() - before.keys()}
    assert new == {f"b2-{d.split('/')[4]}" for d in before}
    assert settled_total(influx, 60) == 60  # both fleets' readings, none lost or merged
    rows = influx.query(f'SELECT count("seq") FROM {MEASUREMENTS} GROUP BY "device_id"')
    ids = {str(r["device_id"]) for r in rows}
    assert any(i.startswith("b2-") for i in ids)
    assert any(not i.startswith("b2-") for i in ids)


def test_ingester_over_tls_with_the_operators_ca_stores_every_reading(
    tls_mosquitto: tuple[Mosquitto, int, Path], influx: Influx, city: str, tmp_path: Path
) -> None:
    """mqtts:// with --ca-file: the ingester's own packet reader on a TLS socket."""
    broker, tls_port, ca = tls_mosquitto
    ingester = IngesterProcess(
        smartcity_env(f"mqtts://127.0.0.1:{tls_port}", influx, city), tmp_path / "ingest.log",
        "--client-id", f"ingest-{city}", "--spool-dir", str(tmp_path / "spool"),
        "--metrics-port", "0", "--ca-file", str(ca),
    )  # fmt: skip
    try:
        ingester.start().wait_subscribed()
        result = run_smartcity(
            "simulate", "--messages", "5000", "--no-progress",
            env=smartcity_env(broker.url, influx, city), timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert settled_total(influx, 5000) == 5000
    finally:
        assert ingester.stop() == 0, ingester.log()


def test_a_burst_is_stored_once_the_stream_goes_quiet_not_at_the_flush_interval(
    mosquitto: Mosquitto, influx: Influx, city: str, tmp_path: Path
) -> None:
    """--flush-idle: the batch is far from full and --flush-interval is a minute away, so only
    the idle flush can store the burst within the wait below."""
    ingester = IngesterProcess(
        smartcity_env(mosquitto.url, influx, city), tmp_path / "ingest.log",
        "--client-id", f"ingest-{city}", "--spool-dir", str(tmp_path / "spool"),
        "--metrics-port", "0", "--batch-size", "50000", "--flush-interval", "60",
        "--flush-idle", "0.2",
    )  # fmt: skip
    try:
        ingester.start().wait_subscribed()
        pub = AckingPublisher(mosquitto.url, f"pub-{city}")
        pub.connect()
        t0 = datetime.now(UTC) - timedelta(minutes=10)
        for i in range(50):
            pub.publish(
                topic("wastebin", "wb-1", "telemetry", city),
                good_reading(i, t0 + timedelta(seconds=i)),
            )
        assert pub.drain(30)
        pub.close()
        assert influx.wait_for_count("wastebin", 50, timeout=30) == 50
    finally:
        assert ingester.stop() == 0, ingester.log()


def test_a_huge_control_character_payload_stalls_nothing(
    mosquitto: Mosquitto, influx: Influx, ingester: IngesterProcess, city: str
) -> None:
    """Issue 10 item 4: 200,000 bytes of 0x01 JSON-escape to a 1.2 MB dead-letter, over the
    broker's 1 MiB packet limit. Its record is cut to a bound, the ingester keeps its connection,
    and the good readings sent right after are stored and acknowledged exactly once."""
    watcher = DeadLetterWatcher(mosquitto)
    pub = AckingPublisher(mosquitto.url, f"pub-{city}")
    pub.connect()
    huge = b"\x01" * 200_000
    pub.publish(topic("streetlight", "sl-x", "telemetry", city), huge)
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    good = 50
    for i in range(good):
        pub.publish(topic("wastebin", "wb-1", "telemetry", city), good_reading(i, t0))
        t0 += timedelta(seconds=1)
    assert pub.drain(30)
    pub.close()
    assert influx.wait_for_count("wastebin", good) == good
    (record,) = watcher.wait_for(1, city)
    assert ingester.stop() == 0
    received, acked = stopped_counts(ingester.log())
    # received also counts other tests' retained statuses replayed on subscribe (skipped)
    assert received >= good + 1
    assert acked == received, "every message acknowledged, none redelivered"
    assert ingester.log().count("connected to broker") == 1, "the connection must never drop"

    assert record["code"] == "bad_json"
    assert record["payload_truncated"] is True
    assert record["payload_bytes"] == len(huge)
    cut = str(record["payload"]).encode()
    assert 0 < len(cut) <= DEADLETTER_PAYLOAD_BYTES
    assert huge.startswith(cut)
    (point,) = influx.query(
        'SELECT "payload", "payload_bytes", "payload_truncated" FROM "deadletter" '
        "WHERE \"reason_code\" = 'bad_json'"
    )
    assert point["payload_bytes"] == len(huge)
    assert point["payload_truncated"] is True
    assert str(point["payload"]).encode() == cut


def test_messages_for_another_city_are_dead_lettered_not_dropped(
    mosquitto: Mosquitto, influx: Influx, ingester: IngesterProcess, city: str
) -> None:
    """Issue 10 item 3, on a broker with no ACL: what no ACL refused is dead-lettered."""
    watcher = DeadLetterWatcher(mosquitto)
    pub = AckingPublisher(mosquitto.url, f"pub-{city}")
    pub.connect()
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    others = [f"m{city}", city.capitalize()]  # like milano, and like Cremona
    for other in others:
        pub.publish(f"smartcity/v1/{other}/wastebin/wb-1/telemetry", good_reading(0, t0))
    pub.publish(topic("wastebin", "wb-1", "telemetry", city), good_reading(1, t0))
    assert pub.drain(30)
    pub.close()
    assert influx.wait_for_count("wastebin", 1) == 1
    assert influx.wait_for_count("deadletter", 2, field="reason") == 2
    rows = influx.query('SELECT "reason", "topic", "reason_code" FROM "deadletter"')
    assert {r["reason_code"] for r in rows} == {"wrong_city"}
    assert {str(r["topic"]).split("/")[2] for r in rows} == set(others)
    assert all(city in str(r["reason"]) for r in rows), rows
    published = watcher.wait_for(2, *others)
    assert sorted((str(d["topic"]).split("/")[2], d["code"]) for d in published) == sorted(
        (other, "wrong_city") for other in others
    )


def test_an_upgraded_ingester_drops_its_former_per_city_subscription(
    own_mosquitto: Mosquitto, influx: Influx, city: str, tmp_path: Path
) -> None:
    """Earlier versions subscribed to their own city; that subscription stays in the persistent
    session the new version resumes, and beside the all-cities one it would deliver every
    message twice. (A broker of its own: other tests' retained statuses would count too.)"""
    client_id = f"ingest-{city}"
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    former = paho.Client(CallbackAPIVersion.VERSION2, client_id, protocol=paho.MQTTv5)
    subscribed = threading.Event()
    former.on_subscribe = lambda *a: subscribed.set()
    former.connect(own_mosquitto.host, own_mosquitto.port, clean_start=False, properties=props)
    former.loop_start()
    former.subscribe(f"smartcity/v1/{city}/+/+/telemetry", qos=1)
    assert subscribed.wait(10)
    former.disconnect()
    former.loop_stop()

    env = smartcity_env(own_mosquitto.url, influx, city)
    args = ("--client-id", client_id, "--spool-dir", str(tmp_path / "spool"), "--metrics-port", "0")
    proc = IngesterProcess(env, tmp_path / "ingest.log", *args).start().wait_subscribed()
    try:
        pub = AckingPublisher(own_mosquitto.url, f"pub-{city}")
        pub.connect()
        t0 = datetime.now(UTC) - timedelta(minutes=5)
        n = 20
        for i in range(n):
            pub.publish(topic("wastebin", "wb-1", "telemetry", city), good_reading(i, t0))
            t0 += timedelta(seconds=1)
        assert pub.drain(30)
        pub.close()
        assert influx.wait_for_count("wastebin", n) == n
    finally:
        assert proc.stop() == 0, proc.log()
    assert stopped_counts(proc.log()) == (n, n)
