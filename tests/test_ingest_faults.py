"""Nothing lost under faults: ingester kills, InfluxDB outages, broker restarts, scale-out.

Every test counts what reached InfluxDB against what the simulator had acknowledged by the
broker, per device type, and checks that per device ``seq`` has no gaps and no doubles.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from simulators.fleet import build_fleet, schedule
from simulators.publisher import AckingPublisher
from smartcity.contract import topic
from smartcity.devices import DEVICE_TYPES
from stack.servers import Influxd, Mosquitto, free_port

from .conftest import (
    DeadLetterWatcher,
    Influx,
    IngesterProcess,
    smartcity_env,
    stopped_counts,
)

FLEET = {"streetlight": 30, "wastebin": 20, "evcharger": 6}
#: Processes the tests start, stopped after each test even when it fails.
_STARTED: list[IngesterProcess] = []
_SIMULATORS: list[subprocess.Popen[str]] = []
READINGS_PER_SIM_SECOND = 30 / 60 + 20 / 300 + 6 / 60


SHARD = 7 * 86_400  # InfluxDB's shard group length for an infinite retention policy


def start_time() -> datetime:
    """A minute into the current shard group, at least a day back: an accelerated run never
    reaches the real clock, and its first hours stay in one InfluxDB shard."""
    day_ago = datetime.now(UTC).timestamp() - 86_400
    return datetime.fromtimestamp(day_ago // SHARD * SHARD + 60, UTC)


def expected(start: datetime, n: int, seed: int = 5) -> Counter[str]:
    sched = schedule(build_fleet(seed, FLEET), start)
    return Counter(next(sched)[1].device_type.name for _ in range(n))


def simulate(
    env: dict[str, str], n: int, start: datetime, rate: float | None
) -> subprocess.Popen[str]:
    """``rate`` readings per second (None = as fast as the broker acknowledges)."""
    speed = "0" if rate is None else f"{rate / READINGS_PER_SIM_SECOND:.3f}"
    sim = subprocess.Popen(
        [
            sys.executable, "-m", "smartcity", "simulate", "--fleet",
            ",".join(f"{t}={FLEET.get(t, 0)}" for t in DEVICE_TYPES), "--seed", "5",
            "--messages", str(n), "--speed", speed,
            "--start", start.isoformat(), "--no-progress",
        ],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _SIMULATORS.append(sim)
    return sim


def finish(sim: subprocess.Popen[str]) -> str:
    _, err = sim.communicate(timeout=300)
    assert sim.returncode == 0, err
    return err


def assert_all_landed(influx: Influx, start: datetime, n: int, timeout: float = 120) -> None:
    want = expected(start, n)
    for measurement, count in want.items():
        assert influx.wait_for_count(measurement, count, timeout) == count, measurement
    for measurement in want:
        rows = influx.query(
            f'SELECT count("seq"), min("seq"), max("seq") FROM "{measurement}" GROUP BY "device_id"'
        )
        for r in rows:
            assert r["count"] == r["max"] - r["min"] + 1, (measurement, r)  # type: ignore[operator]


@pytest.fixture(autouse=True)
def _no_ingester_left_running() -> Iterator[None]:
    """A failed test must not leave its ingester running and competing for the CPU."""
    yield
    while _STARTED:
        _STARTED.pop().kill_all()
    while _SIMULATORS:
        sim = _SIMULATORS.pop()
        if sim.poll() is None:
            sim.kill()
        sim.communicate()


def ingester_for(
    broker: Mosquitto, influx: Influx, city: str, tmp_path: Path, *extra: str
) -> IngesterProcess:
    proc = IngesterProcess(
        smartcity_env(broker.url, influx, city),
        tmp_path / "ingest.log",
        "--client-id", f"ingest-{city}",
        "--spool-dir", str(tmp_path / "spool"), "--metrics-port", "0", *extra,
    )  # fmt: skip
    _STARTED.append(proc)
    return proc


def test_ingester_sigkilled_five_times_loses_nothing(
    mosquitto: Mosquitto, influx: Influx, city: str, tmp_path: Path
) -> None:
    n, start = 30_000, start_time()
    ing = ingester_for(mosquitto, influx, city, tmp_path).start().wait_subscribed()
    sim = simulate(smartcity_env(mosquitto.url, influx, city), n, start, rate=6000)
    kills = 0
    while kills < 5:
        time.sleep(0.8)
        assert ing.stop(signal.SIGKILL) == -signal.SIGKILL
        kills += 1
        ing.start().wait_subscribed(timeout=60)
    finish(sim)
    assert_all_landed(influx, start, n)
    assert ing.stop() == 0


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]


def test_influxdb_down_for_30_s_loses_nothing_and_memory_stays_bounded(
    mosquitto: Mosquitto, own_influxd: Influxd, city: str, tmp_path: Path
) -> None:
    influx = Influx(own_influxd.url, f"db_{city}")
    n, start = 20_000, start_time()
    ing = ingester_for(
        mosquitto, influx, city, tmp_path, "--batch-size", "500", "--max-pending-batches", "2",
        "--shutdown-grace", "5",
    ).start().wait_subscribed()  # fmt: skip
    sim = simulate(smartcity_env(mosquitto.url, influx, city), n, start, rate=400)
    time.sleep(5)
    own_influxd.stop()
    peak = 0.0
    outage_end = time.monotonic() + 30
    while time.monotonic() < outage_end:
        assert ing.proc is not None
        peak = max(peak, rss_mb(ing.proc.pid))
        time.sleep(0.5)
    spooled = list((tmp_path / "spool").rglob("*.lp"))
    own_influxd.start()
    finish(sim)
    assert_all_landed(influx, start, n)
    assert spooled, "with 2 batches in memory, a 30 s outage must spill to the disk spool"
    assert peak < 200, f"ingester RSS reached {peak:.0f} MB during the outage"
    assert ing.stop() == 0
    assert not list((tmp_path / "spool").rglob("*.lp")), "the spool must be drained"


class SlowProxy:
    """A TCP relay in front of the real InfluxDB that holds every chunk a client sends for
    ``delay`` seconds: a slow database (the writes still reach the real one), not a fake."""

    def __init__(self, upstream: str, delay: float) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 8086)
        self.delay = delay
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            for src, dst, delay in ((client, upstream, self.delay), (upstream, client, 0.0)):
                threading.Thread(target=self._pump, args=(src, dst, delay), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, delay: float) -> None:
        try:
            while data := src.recv(1 << 20):
                time.sleep(delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            # both ends, closed too: a client that hangs up (the ingester's late-rollup client
            # does, between rounds) must not leave sockets for the garbage collector
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def close(self) -> None:
        self.server.close()


def queue_depth(metrics_url: str) -> int:
    with urllib.request.urlopen(metrics_url, timeout=5) as resp:
        text = resp.read().decode()
    match = re.search(r"^smartcity_ingest_queue_batches\{[^}]*\} (\S+)$", text, re.M)
    assert match, text
    return int(float(match.group(1)))


def test_slow_influxdb_pauses_receiving_at_max_pending_batches_and_loses_nothing(
    mosquitto: Mosquitto, influx: Influx, city: str, tmp_path: Path
) -> None:
    """InfluxDB slow but up: the ingester stops reading from the broker once
    --max-pending-batches wait, instead of holding all the broker may send (Receive Maximum
    65,535 messages); the broker queues the rest, and all of it is stored in the end."""
    n, start, max_pending = 4000, start_time(), 2
    slow = SlowProxy(influx.url, delay=0.3)
    metrics_port = free_port()
    ing = ingester_for(
        mosquitto, Influx(slow.url, influx.db), city, tmp_path, "--batch-size", "100",
        "--max-pending-batches", str(max_pending), "--metrics-port", str(metrics_port),
    ).start().wait_subscribed()  # fmt: skip
    try:
        finish(simulate(smartcity_env(mosquitto.url, influx, city), n, start, rate=None))
        depths = []
        want = sum(expected(start, n).values())
        deadline = time.monotonic() + 120
        while (
            influx.count("streetlight") + influx.count("wastebin") + influx.count("evcharger")
            < want
            and time.monotonic() < deadline
        ):
            depths.append(queue_depth(f"http://127.0.0.1:{metrics_port}/metrics"))
            time.sleep(0.05)
        assert_all_landed(influx, start, n)
        # one batch more may fill from the read that was under way when receiving paused
        assert max(depths) <= max_pending + 1, f"batches waiting in memory: {max(depths)}"
        assert ing.stop() == 0
    finally:
        slow.close()


def test_broker_restarted_mid_stream_loses_nothing(
    own_mosquitto: Mosquitto, influx: Influx, city: str, tmp_path: Path
) -> None:
    n, start = 12_000, start_time()
    ing = ingester_for(own_mosquitto, influx, city, tmp_path).start().wait_subscribed()
    sim = simulate(smartcity_env(own_mosquitto.url, influx, city), n, start, rate=800)
    for _ in range(2):
        time.sleep(4)
        own_mosquitto.restart()
    finish(sim)
    assert_all_landed(influx, start, n)
    assert ing.stop() == 0


def test_the_ready_file_exists_only_while_subscribed(
    own_mosquitto: Mosquitto, influx: Influx, city: str, tmp_path: Path
) -> None:
    """Not left from an earlier run, gone while the broker is away, back once resubscribed,
    gone after a stop: what a compose healthcheck or smartcity up may rely on."""
    ready = tmp_path / "ingest.ready"
    ready.touch()  # a previous run's
    ing = ingester_for(own_mosquitto, influx, city, tmp_path, "--ready-file", str(ready))

    def wait_for(exists: bool) -> None:
        deadline = time.monotonic() + 30
        while ready.exists() != exists:
            assert time.monotonic() < deadline, f"ready file exists={ready.exists()}"
            time.sleep(0.02)

    own_mosquitto.stop()
    ing.start()
    wait_for(False)
    own_mosquitto.start()
    ing.wait_subscribed()
    wait_for(True)
    own_mosquitto.stop()
    wait_for(False)
    own_mosquitto.start()
    wait_for(True)
    assert ing.stop() == 0
    assert not ready.exists()


def test_two_workers_share_the_load_with_no_loss_and_no_duplicates(
    own_mosquitto: Mosquitto, influx: Influx, city: str, tmp_path: Path
) -> None:
    # a broker of its own, to count exactly: the ingester reads every city's topics, and the
    # shared broker's retained statuses of other tests' cities are received (and skipped) too
    mosquitto = own_mosquitto
    n, start = 10_000, start_time()
    ing = ingester_for(
        mosquitto, influx, city, tmp_path, "--workers", "2", "--share-group", f"g{city}"
    ).start()
    deadline = time.monotonic() + 60
    while ing.log().count("connected to broker") < 2:
        assert time.monotonic() < deadline, ing.log()
        assert ing.proc is not None
        assert ing.proc.poll() is None, ing.log()
        time.sleep(0.1)
    sim = simulate(smartcity_env(mosquitto.url, influx, city), n, start, rate=None)
    log = finish(sim)
    sent = int(re.search(r"messages_acked=(\d+)", log).group(1))  # type: ignore[union-attr]
    assert_all_landed(influx, start, n)
    assert ing.stop() == 0
    # each worker's final figures: together they received each message exactly once
    rows = influx.query('SELECT last("messages_received") FROM "ingest_stats" GROUP BY "worker"')
    per_worker = {r["worker"]: r["last"] for r in rows}
    assert len(per_worker) == 2
    assert all(v > 0 for v in per_worker.values()), per_worker  # type: ignore[operator]
    assert sum(per_worker.values()) == sent  # type: ignore[arg-type]


def test_sigterm_writes_and_acknowledges_everything_then_exits_0(
    own_mosquitto: Mosquitto, influx: Influx, city: str, tmp_path: Path
) -> None:
    mosquitto = own_mosquitto  # counts exactly: see the two-worker test
    n, start = 5_000, start_time()
    ing = ingester_for(mosquitto, influx, city, tmp_path).start().wait_subscribed()
    sim = simulate(smartcity_env(mosquitto.url, influx, city), n, start, rate=None)
    time.sleep(1)
    assert ing.stop(signal.SIGTERM) == 0  # mid-stream
    received, acked = stopped_counts(ing.log())
    assert received > 0
    assert received == acked, "every received message must be acknowledged on SIGTERM"
    sent = int(re.search(r"messages_acked=(\d+)", finish(sim)).group(1))  # type: ignore[union-attr]
    ing.start().wait_subscribed()
    assert_all_landed(influx, start, n)
    assert ing.stop() == 0
    # the second run got exactly what the first had not acknowledged: nothing twice
    assert received + stopped_counts(ing.log())[0] == sent


def test_influxdb_refusals_are_dead_lettered_and_the_rest_stored(
    mosquitto: Mosquitto, own_influxd: Influxd, city: str, tmp_path: Path
) -> None:
    """400 (a field type conflict) splits out the refused points; 413 halves the batch."""
    own_influxd.stop()
    own_influxd.max_body_size = 64 * 1024
    own_influxd.start()
    influx = Influx(own_influxd.url, f"db_{city}")
    influx.query(f'CREATE DATABASE "{influx.db}"')
    start = start_time()
    # a foreign writer stored temperature as a string in this shard: our floats now conflict
    from .test_lineprotocol import write

    stamp_ns = int(start.timestamp() * 1e9)
    write(
        influx,
        f'wastebin,device_id=other,device_type=wastebin,zone=Po temperature="hot" {stamp_ns}',
    )
    ing = ingester_for(mosquitto, influx, city, tmp_path, "--batch-size", "5000").start()
    ing.wait_subscribed()
    n = 3000
    finish(simulate(smartcity_env(mosquitto.url, influx, city), n, start, rate=None))
    want = expected(start, n)
    refused = influx.wait_for_count("deadletter", want["wastebin"], field="reason")
    assert refused == want["wastebin"]
    rows = influx.query(
        'SELECT "reason" FROM "deadletter" WHERE "reason_code" = $c', c="rejected_by_db"
    )
    assert rows
    assert all("conflict" in str(r["reason"]) for r in rows)
    for measurement in ("streetlight", "evcharger"):
        assert influx.wait_for_count(measurement, want[measurement]) == want[measurement]
    assert ing.stop() == 0


def test_lagging_subscriber_is_not_dropped_by_the_shipped_broker_config(
    mosquitto: Mosquitto, influx: Influx, city: str, tmp_path: Path
) -> None:
    """Mosquitto's default (1000 queued) would drop most of this while the ingester is away."""
    ing = ingester_for(mosquitto, influx, city, tmp_path).start().wait_subscribed()
    assert ing.stop() == 0  # the session (and its queue) stays on the broker
    n, start = 20_000, start_time()
    finish(simulate(smartcity_env(mosquitto.url, influx, city), n, start, rate=None))
    ing.start()
    assert_all_landed(influx, start, n)
    assert ing.stop() == 0


def test_dead_letters_under_a_slow_influxdb_hold_nothing_up_and_all_reach_mqtt(
    mosquitto: Mosquitto, influx: Influx, city: str, tmp_path: Path
) -> None:
    """InfluxDB slow, so the ingester keeps pausing its reads from the broker. A dead-letter's
    PUBACK is read only once reading resumes, and reading resumes only once the writer takes
    the next batch: a writer waiting on that PUBACK waited for the publish to time out, the
    MQTT copy lost, every dead-letter adding seconds before the next readings were stored."""
    slow = SlowProxy(influx.url, delay=0.2)
    watcher = DeadLetterWatcher(mosquitto)
    ing = ingester_for(
        mosquitto, Influx(slow.url, influx.db), city, tmp_path, "--batch-size", "20",
        "--max-pending-batches", "1",
    ).start().wait_subscribed()  # fmt: skip
    try:
        pub = AckingPublisher(mosquitto.url, f"pub-{city}")
        pub.connect()
        t0 = datetime.now(UTC) - timedelta(hours=1)
        good, bad = 600, 0
        for seq in range(good):
            ts = (t0 + timedelta(seconds=seq)).isoformat()
            pub.publish(topic("wastebin", "wb-1", "telemetry", city), json.dumps({
                "v": 1, "readings": [{"ts": ts, "seq": seq, "fillingLevel": 0.5,
                "temperature": 11.0, "storedWasteKind": "plastic", "status": "ok",
                "batteryLevel": 0.7}]}).encode())  # fmt: skip
            if seq % 20 == 0:
                pub.publish(topic("wastebin", "wb-1", "telemetry", city), b"not json")
                bad += 1
        assert pub.drain(60)
        pub.close()
        assert influx.wait_for_count("wastebin", good, timeout=120) == good
        assert len(watcher.wait_for(bad, city)) == bad, "every dead-letter published on MQTT"
        assert ing.stop() == 0
        received, acked = stopped_counts(ing.log())
        assert received == acked
    finally:
        slow.close()
