"""Ingest benchmark: our end-to-end rate against the limits of this machine, measured in one run.

    python bench/ingest.py [--messages 200000] [--devices 2000] [--workers 1] [--repeat 3]

(a) Mosquitto's own QoS 1 delivery rate to a C subscriber that discards messages
    (``mosquitto_sub -q 1 -C N``), fed by a C publisher that counts every PUBACK
    (``bench/qos1pub.c``, 1,000 messages in flight);
(b) InfluxDB's own write rate for pre-serialized line-protocol batches;
(c) our end-to-end rate: N simulator messages from D devices, published by the same C
    publisher, until every reading is queryable in InfluxDB, checking 0 loss;
(d) p50/p99 publish-to-queryable latency at a steady 2,000 messages/s;
(e) readings/s when each message carries a batch of readings (an edge backlog).
(a) and (c) run ``--repeat`` times (3), in turns. Each phase ends its ingester's broker session
(clean start, no expiry), so no later phase publishes into the queue of one nobody reads. The
line before the last is (e)'s readings/s over (b); the last is
``end-to-end/limit ratio: X.XX`` = median (c) / min(median (a), b).
``--baseline-python PY`` also runs (c) with the ingester of another checkout (its virtualenv's
python, e.g. one at the commit before a change), in turns with ours, and prints its ratio
before (e)/(b): old and new measured in one run, against the same limits.
Needs gcc (installed from Debian packages when missing, as root).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# this file is bench/ingest.py: keep it from shadowing the ingest package
sys.path[0] = str(ROOT)

from ingest.mqtt import MqttOptions, connect  # noqa: E402
from ingest.settings import IngestSettings  # noqa: E402
from simulators.fleet import build_fleet, schedule  # noqa: E402
from smartcity.contract import encode_telemetry, topic  # noqa: E402
from stack.servers import Influxd, Mosquitto, find_binary, free_port  # noqa: E402

#: (b) writes batches of the size the ingester writes in (c)
INGEST_BATCH: int = IngestSettings.model_fields["batch_size"].default


def build_publisher(workdir: Path) -> str:
    if shutil.which("gcc") is None:
        if os.geteuid() != 0:
            sys.exit("needs a C compiler: sudo apt-get install gcc")
        subprocess.run(["apt-get", "install", "-y", "-qq", "gcc", "libc6-dev"], check=True)
    exe = workdir / "qos1pub"
    subprocess.run(
        ["gcc", "-O2", "-Wall", "-o", str(exe), str(ROOT / "bench" / "qos1pub.c")], check=True
    )
    return str(exe)


def publish(exe: str, broker: Mosquitto, source: str, *extra: str) -> tuple[int, float]:
    out = subprocess.run(
        [exe, broker.host, str(broker.port), source, *extra],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    fields = dict(kv.split("=") for kv in out.stdout.split())
    return int(fields["acked"]), float(fields["seconds"])


def query(db: Influxd, database: str, q: str) -> list[list[object]]:
    data = urllib.parse.urlencode({"db": database, "q": q}).encode()
    with urllib.request.urlopen(f"{db.url}/query", data, timeout=30) as resp:
        import json

        result = json.load(resp)["results"][0]
    return [v for s in result.get("series", []) for v in s["values"]]


def count(db: Influxd, database: str) -> int:
    rows = query(db, database, 'SELECT count("seq") FROM "streetlight", "wastebin", "evcharger"')
    return sum(int(r[1]) for r in rows)  # type: ignore[call-overload]


def broker_rate(exe: str, broker: Mosquitto, n: int) -> float:
    sub = subprocess.Popen(
        [find_binary("mosquitto_sub"), "-h", broker.host, "-p", str(broker.port), "-q", "1",
         "-C", str(n), "-t", "bench/limit"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1.0)
    t0 = time.monotonic()
    acked, _ = publish(exe, broker, "-", str(n), "bench/limit", "250")
    if sub.wait(timeout=600) != 0:
        raise SystemExit("mosquitto_sub did not receive every message")
    elapsed = time.monotonic() - t0
    assert acked == n, f"publisher had only {acked} of {n} acknowledged"
    return n / elapsed


def influx_rate(db: Influxd, n: int, batch: int) -> float:
    database = "bench_limit"
    query(db, database, f'CREATE DATABASE "{database}"')
    base = 1_700_000_000_000_000_000
    bodies = [
        "\n".join(
            f"wastebin,device_id=wb-{i % 2000:05d},device_type=wastebin,zone=Centro "
            f'seq={i}i,fillingLevel=0.5,temperature=12.5,storedWasteKind="paper",'
            f'status="ok",batteryLevel=0.9 {base + i * 1000}'
            for i in range(start, min(start + batch, n))
        ).encode()
        for start in range(0, n, batch)
    ]
    t0 = time.monotonic()
    for body in bodies:
        req = urllib.request.Request(f"{db.url}/write?db={database}", body, method="POST")
        with urllib.request.urlopen(req, timeout=60) as resp:
            assert resp.status == 204
    return n / (time.monotonic() - t0)


def message_file(path: Path, n: int, devices: int, per_message: int, city: str) -> int:
    """N readings from the simulator's fleet, ``per_message`` per message; returns messages."""
    counts = {"streetlight": devices * 6 // 10, "wastebin": devices * 3 // 10}
    counts["evcharger"] = devices - sum(counts.values())
    fleet = build_fleet(11, counts)
    start = datetime.now(UTC) - timedelta(days=1)
    pending: dict[str, list[object]] = {}
    messages = 0
    with path.open("w") as f:
        sched = schedule(fleet, start)
        for _ in range(n):
            due, dev = next(sched)
            reading, _ = dev.read(due)
            batch = pending.setdefault(dev.device_id, [])
            batch.append(reading)
            if len(batch) >= per_message:
                t = topic(dev.device_type.name, dev.device_id, "telemetry", city)
                body = encode_telemetry(pending.pop(dev.device_id), dev.placement.zone)  # type: ignore[arg-type]
                f.write(f"{t}\t{body.decode()}\n")
                messages += 1
        for device_id, batch in pending.items():
            dev = next(d for d in fleet if d.device_id == device_id)
            t = topic(dev.device_type.name, dev.device_id, "telemetry", city)
            f.write(f"{t}\t{encode_telemetry(batch, dev.placement.zone).decode()}\n")  # type: ignore[arg-type]
            messages += 1
    return messages


class Ingester:
    def __init__(
        self,
        broker: Mosquitto,
        db: Influxd,
        database: str,
        workers: int,
        work: Path,
        python: str = sys.executable,
    ) -> None:
        env = {
            **os.environ, "SMARTCITY_MQTT_URL": broker.url, "SMARTCITY_INFLUX_URL": db.url,
            "SMARTCITY_INFLUX_DB": database, "SMARTCITY_CITY": "bench",
        }  # fmt: skip
        self.broker, self.client_id, self.workers = broker, database, workers
        self.log = work / f"ingest-{database}.log"
        self.proc = subprocess.Popen(
            [python, "-m", "smartcity", "ingest", "--workers", str(workers),
             "--metrics-port", "0", "--spool-dir", str(work / "spool"), "--client-id", database,
             # a share group per phase: an earlier phase's offline sessions would keep their share
             *(["--share-group", database] if workers > 1 else [])],
            # not from this checkout's folder: `python -m` would import its packages first
            env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT, cwd=work,
        )  # fmt: skip
        self.peak_rss = 0.0
        self.cpu_seconds = 0.0
        deadline = time.monotonic() + 60
        while self.log.read_text().count("connected to broker") < workers:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"ingester did not start:\n{self.log.read_text()}")
            time.sleep(0.1)

    def pids(self) -> list[int]:
        return [self.proc.pid] + [
            int(p) for p in subprocess.run(
                ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True
            ).stdout.split()
        ]  # fmt: skip

    def sample_rss(self) -> None:
        total = 0.0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) / 1024
            except FileNotFoundError:
                pass
        self.peak_rss = max(self.peak_rss, total)

    def sample_cpu(self) -> None:
        """CPU seconds (user + system) the ingester's processes used so far: unlike a rate, a
        figure that other load on the machine hardly moves."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        self.cpu_seconds = total

    def stop(self) -> None:
        """Stop the ingester and end its broker session(s)."""
        self.proc.terminate()
        self.proc.wait(120)
        ids = [self.client_id] if self.workers == 1 else [
            f"{self.client_id}-{i}" for i in range(1, self.workers + 1)
        ]  # fmt: skip
        for client_id in ids:
            asyncio.run(end_session(self.broker, client_id))


async def end_session(broker: Mosquitto, client_id: str) -> None:
    """Connect as ``client_id`` with a clean start and no session expiry, then leave: the broker
    drops the session and its queue."""
    options = MqttOptions(broker.host, broker.port, client_id, clean_start=True, session_expiry=0)
    conn = await connect(options, lambda *_: None)
    await conn.disconnect()


def end_to_end(
    exe: str,
    broker: Mosquitto,
    db: Influxd,
    work: Path,
    n: int,
    devices: int,
    per_message: int,
    workers: int,
    label: str,
    python: str = sys.executable,
) -> tuple[float, float, float, float]:
    """Returns (messages/s, readings/s, peak ingester RSS MB, ingester CPU µs per message) of
    the ingester ``python`` runs."""
    database = f"bench_{label}"
    path = work / f"{devices}-{per_message}.tsv"
    if path.exists():  # a repeat: the very same messages, into a database of its own
        messages = sum(1 for _ in path.open())
    else:
        messages = message_file(path, n, devices, per_message, "bench")
    ing = Ingester(broker, db, database, workers, work, python)
    try:
        ing.sample_cpu()
        cpu_at_start = ing.cpu_seconds  # start-up (imports, connecting) is not per message
        t0 = time.monotonic()
        results: list[tuple[int, float]] = []
        pub = threading.Thread(target=lambda: results.append(publish(exe, broker, str(path))))
        pub.start()
        got = 0
        while got < n:
            time.sleep(0.1)
            ing.sample_rss()
            # a count scans every point stored: asking while the publisher still sends would
            # take InfluxDB's CPU from the very run it measures
            if not pub.is_alive():
                got = count(db, database)
            if time.monotonic() - t0 > 900:
                raise SystemExit(f"{label}: only {got} of {n} readings arrived in 15 minutes")
        elapsed = time.monotonic() - t0
        pub.join()
        assert results, "the publisher failed"
        assert results[0][0] == messages, f"publisher had {results[0][0]} of {messages} acked"
        ing.sample_cpu()
        time.sleep(1)
        final = count(db, database)
    finally:
        ing.stop()
    if final != n:
        raise SystemExit(f"{label}: {final} readings stored, {n} sent")
    cpu_us = (ing.cpu_seconds - cpu_at_start) / messages * 1e6
    return messages / elapsed, n / elapsed, ing.peak_rss, cpu_us


def latency(
    broker: Mosquitto, db: Influxd, work: Path, rate: int = 2000, seconds: float = 20
) -> tuple[float, float]:
    """Publish-to-queryable latency of a probe device inside a steady ``rate`` msg/s stream."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from simulators.base import Placement
    from simulators.wastebin import SimulatedWastebin

    database = "bench_latency"
    ing = Ingester(broker, db, database, 1, work)
    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.max_inflight_messages_set(1000)
    client.connect(broker.host, broker.port)
    client.loop_start()
    import random

    bins = [
        SimulatedWastebin(Placement(f"lat-{i}", "Centro", 45.13, 10.02), random.Random(i))
        for i in range(200)
    ]
    probe = SimulatedWastebin(Placement("probe", "Centro", 45.13, 10.02), random.Random(-1))
    sent_at: dict[int, float] = {}
    seen_at: dict[int, float] = {}
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            rows = query(
                db, database, 'SELECT last("seq") FROM "wastebin" WHERE "device_id" = \'probe\''
            )
            if rows:
                top = int(rows[0][1])  # type: ignore[call-overload]
                now = time.monotonic()
                for s in list(sent_at):
                    if s <= top and s not in seen_at:
                        seen_at[s] = now
            time.sleep(0.01)

    poller = threading.Thread(target=poll)
    poller.start()
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < seconds:
        due = t0 + i / rate
        while time.monotonic() < due:
            time.sleep(0.0002)
        now_dt = datetime.now(UTC)
        dev = probe if i % 20 == 0 else bins[i % len(bins)]
        reading, _ = dev.read(now_dt)
        if dev is probe:
            sent_at[reading.seq] = time.monotonic()
        client.publish(
            topic("wastebin", dev.device_id, "telemetry", "bench"),
            encode_telemetry([reading], "Centro"),
            qos=1,
        )
        i += 1
    deadline = time.monotonic() + 30
    while len(seen_at) < len(sent_at) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    poller.join()
    client.disconnect()
    client.loop_stop()
    ing.stop()
    lat = sorted(seen_at[s] - sent_at[s] for s in seen_at)
    if len(lat) < len(sent_at):
        raise SystemExit(f"latency: only {len(lat)} of {len(sent_at)} probe readings arrived")
    return lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]


def row(label: str, value: str) -> None:
    print(f"{label:64} {value:>12}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=200_000, help="readings for (a)-(c)")
    parser.add_argument("--devices", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=1, help="ingester processes for (c)")
    parser.add_argument("--batch", type=int, default=10, help="readings per message for (e)")
    parser.add_argument(
        "--repeat", type=int, default=3,
        help="runs of (a) and of (c), taken in turns; the ratio is of their medians, as either "
        "moves by about 10%% from one run to the next on a shared machine",
    )  # fmt: skip
    parser.add_argument(
        "--baseline-python", metavar="PY",
        help="also run (c) with the ingester this python runs (another checkout's .venv/bin/"
        "python), in turns with ours, and print its ratio too",
    )  # fmt: skip
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="smartcity-bench-"))
    exe = build_publisher(work)
    broker = Mosquitto(workdir=work / "mosquitto", host="127.0.0.1", port=free_port())
    db = Influxd(workdir=work / "influxd", host="127.0.0.1", port=free_port())
    broker.start()
    db.start()
    n = args.messages
    try:
        row("measure", "value")
        b = influx_rate(db, n, INGEST_BATCH)
        row(f"(b) InfluxDB pre-serialized {INGEST_BATCH:,}-line writes, points/s", f"{b:,.0f}")
        limits: list[float] = []
        rates: list[float] = []
        baseline: list[float] = []
        peak_rss = baseline_rss = 0.0
        cpu: list[float] = []
        baseline_cpu: list[float] = []
        for i in range(1, args.repeat + 1):
            limits.append(broker_rate(exe, broker, n))
            row(f"(a) broker QoS 1 to a C subscriber, msg/s, run {i}", f"{limits[-1]:,.0f}")
            c, _, rss, us = end_to_end(
                exe, broker, db, work, n, args.devices, 1, args.workers, f"e2e{i}"
            )
            rates.append(c)
            cpu.append(us)
            peak_rss = max(peak_rss, rss)
            what = f"{n:,} msgs / {args.devices:,} devices"
            row(f"(c) end to end, {what}, msg/s, run {i}", f"{c:,.0f}")
            if args.baseline_python:
                c, _, rss, us = end_to_end(
                    exe, broker, db, work, n, args.devices, 1, args.workers, f"old{i}",
                    args.baseline_python,
                )  # fmt: skip
                baseline.append(c)
                baseline_cpu.append(us)
                baseline_rss = max(baseline_rss, rss)
                row(f"(c) baseline ingester, msg/s, run {i}", f"{c:,.0f}")
        a, c = statistics.median(limits), statistics.median(rates)
        row(f"(a) median of {args.repeat}, msg/s", f"{a:,.0f}")
        row(f"(c) median of {args.repeat}, msg/s (0 lost in every run)", f"{c:,.0f}")
        row(f"    ingester peak RSS, MB ({args.workers} worker(s))", f"{peak_rss:,.0f}")
        row("    ingester CPU per message, µs (median)", f"{statistics.median(cpu):,.1f}")
        if baseline:
            row(
                f"(c) baseline median of {args.repeat}, msg/s",
                f"{statistics.median(baseline):,.0f}",
            )
            row("    baseline ingester peak RSS, MB", f"{baseline_rss:,.0f}")
            row(
                "    baseline ingester CPU per message, µs (median)",
                f"{statistics.median(baseline_cpu):,.1f}",
            )
        p50, p99 = latency(broker, db, work)
        row("(d) publish-to-queryable at 2,000 msg/s, p50 s", f"{p50:.3f}")
        row("    p99 s", f"{p99:.3f}")
        em, er, _, _ = end_to_end(
            exe, broker, db, work, n, args.devices, args.batch, args.workers, "batched"
        )
        row(f"(e) {args.batch} readings per message: msg/s", f"{em:,.0f}")
        row("    readings/s", f"{er:,.0f}")
        if baseline:
            old = statistics.median(baseline) / min(a, b)
            print(f"baseline end-to-end/limit ratio: {old:.2f}")
        print(f"(e) readings/s / (b) InfluxDB points/s: {er / b:.2f}")
        print(f"end-to-end/limit ratio: {c / min(a, b):.2f}")
    finally:
        broker.stop()
        db.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
