"""The OCPP central system under load, against the targets of issue 14 (a script, not a test).

    .venv/bin/python bench/ocpp.py [--chargers 1000] [--period 10] [--duration 60] [--burst 20]

Real Mosquitto, InfluxDB, ingester and ``smartcity ocpp`` as child processes; the chargers are
the ``ocpp`` package's charge point side in this process, each its own WebSocket.

1. Steady load: ``--chargers`` charge points connect (HTTP Basic, their own passwords) and each
   sends one message every ``--period`` seconds (MeterValues, every sixth a
   StatusNotification) for ``--duration`` seconds. Reported: connections held, OCPP messages/s
   answered, p50/p99 CALL->CALLRESULT latency, the gateway's CPU and peak RSS, and that every
   reading is in InfluxDB (count against the readings sent).
2. Highest rate: the same chargers send as fast as they get answers for ``--burst`` seconds;
   the rate is the readings stored in InfluxDB per second, from the first message until the
   last reading is in. Baseline, same run: as many one-reading telemetry messages published
   straight to the broker (paho, QoS 1, 1,000 in flight) and stored by the same ingester.

Targets: 1,000 chargers held with p99 <= 100 ms at one message per charger every 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.orm import Session
from websockets.asyncio.client import connect

from smartcity.charger_auth import hash_password
from smartcity.contract import encode_telemetry, topic
from smartcity.devices.evcharger import Connector, EvchargerReading
from smartcity.registry.db import make_engine
from smartcity.registry.models import Device
from stack.servers import Influxd, Mosquitto, free_port

# Run as ``python bench/ocpp.py``, this file's folder leads sys.path and its name would hide the
# ``ocpp`` package.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
from ocpp.v16 import ChargePoint, call  # noqa: E402

CITY = "bench"
TICK = os.sysconf("SC_CLK_TCK")
TARGET_CHARGERS, TARGET_P99_MS = 1000, 100.0


def proc_cpu_s(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / TICK


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def count(db: Influxd, database: str, measurement: str = "evcharger") -> int:
    body = urllib.parse.urlencode({"db": database, "q": f"SELECT count(seq) FROM {measurement}"})
    with urllib.request.urlopen(f"{db.url}/query", body.encode(), timeout=30) as resp:
        series = json.load(resp)["results"][0].get("series", [])
    return int(series[0]["values"][0][1]) if series else 0


def wait_count(db: Influxd, database: str, expected: int, timeout: float = 300) -> float:
    """Seconds until ``expected`` readings are in (or raise); polled every 0.2 s."""
    start = time.monotonic()
    while (got := count(db, database)) < expected:
        if time.monotonic() - start > timeout:
            raise SystemExit(f"only {got} of {expected} readings reached InfluxDB")
        time.sleep(0.2)
    return time.monotonic()


def child(argv: list[str], env: dict[str, str], log: Path, text: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "smartcity", *argv], env=env, stdout=log.open("w"),
        stderr=subprocess.STDOUT, cwd=log.parent,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while text not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{argv[0]} did not start:\n{log.read_text()}")
        time.sleep(0.1)
    return proc


class Charger:
    def __init__(self, cid: str, password: str) -> None:
        self.id, self.password = cid, password
        self.point: ChargePoint | None = None
        self.energy = random.uniform(1e6, 5e6)
        self.metered = False
        self.sent = self.readings = 0
        self.latencies: list[float] = []

    async def open(self, url: str) -> None:
        token = base64.b64encode(f"{self.id}:{self.password}".encode()).decode()
        ws = await connect(
            f"{url}/{self.id}", subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers={"Authorization": f"Basic {token}"}, open_timeout=120,
        )  # fmt: skip
        self.point = ChargePoint(self.id, ws, response_timeout=60)
        self.listener = asyncio.ensure_future(self.point.start())
        await self.point.call(call.BootNotification(charge_point_model="bench",
                                                    charge_point_vendor="bench"))  # fmt: skip

    async def one(self) -> None:
        assert self.point is not None
        self.sent += 1
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if self.sent % 6 == 0:
            message = call.StatusNotification(connector_id=1, error_code="NoError",
                                              status="Charging", timestamp=now)  # fmt: skip
            self.readings += self.metered
        else:
            self.energy += random.uniform(10, 500)
            message = call.MeterValues(connector_id=1, meter_value=[{
                "timestamp": now, "sampledValue": [
                    {"value": f"{self.energy:.0f}", "measurand": "Energy.Active.Import.Register"},
                    {"value": "7400", "unit": "W", "measurand": "Power.Active.Import"},
                ]}])  # fmt: skip
            self.metered = True
            self.readings += 1
        start = time.perf_counter()
        await self.point.call(message)
        self.latencies.append(time.perf_counter() - start)


async def steady(chargers: list[Charger], period: float, duration: float) -> None:
    async def run(c: Charger) -> None:
        await asyncio.sleep(random.uniform(0, period))
        end = time.monotonic() + duration
        while time.monotonic() < end:
            begun = time.monotonic()
            await c.one()
            await asyncio.sleep(max(0.0, period - (time.monotonic() - begun)))

    await asyncio.gather(*(run(c) for c in chargers))


async def burst(chargers: list[Charger], duration: float) -> None:
    end = time.monotonic() + duration

    async def run(c: Charger) -> None:
        while time.monotonic() < end:
            await c.one()

    await asyncio.gather(*(run(c) for c in chargers))


def direct(broker: Mosquitto, n: int, devices: int) -> None:
    """``n`` one-reading telemetry messages straight to the broker, 1,000 in flight."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-direct",
                         protocol=paho.MQTTv5)  # fmt: skip
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    done = threading.Semaphore(1000)
    client.on_publish = lambda *a: done.release()
    client.connect(broker.host, broker.port)
    client.loop_start()
    for i in range(n):
        reading = EvchargerReading(
            ts=datetime.now(UTC), seq=i, power=7.4, energy=1000.0 + i,
            connectors=[Connector(connectorId=1, status="Charging", power=7.4, energy=1000.0)],
        )  # fmt: skip
        done.acquire()
        client.publish(topic("evcharger", f"evd-{i % devices:05d}", "telemetry", CITY),
                       encode_telemetry([reading]), qos=1)  # fmt: skip
    for _ in range(1000):
        done.acquire()
    client.loop_stop()
    client.disconnect()


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args.add_argument("--chargers", type=int, default=1000)
    args.add_argument("--period", type=float, default=10.0)
    args.add_argument("--duration", type=float, default=60.0)
    args.add_argument("--burst", type=float, default=20.0)
    opts = args.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-ocpp-"))
    broker = Mosquitto(workdir=work / "mosquitto", host="127.0.0.1", port=free_port())
    db = Influxd(workdir=work / "influxd", host="127.0.0.1", port=free_port())
    broker.start()
    db.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        registry = f"sqlite:///{work}/registry.db"
        engine = make_engine(registry)
        passwords = {f"ev-{i:05d}": f"pw-{i}-{random.random()}" for i in range(opts.chargers)}
        now = datetime.now(UTC)
        with Session(engine) as session:
            for cid, pw in passwords.items():
                session.add(Device(device_id=cid, device_type="evcharger", zone="Centro",
                                   lat=45.13, lon=10.02, created_at=now, updated_at=now,
                                   ocpp_password_hash=hash_password(pw)))  # fmt: skip
            session.commit()
        engine.dispose()
        env = {**os.environ, "SMARTCITY_MQTT_URL": broker.url, "SMARTCITY_INFLUX_URL": db.url,
               "SMARTCITY_INFLUX_DB": "bench", "SMARTCITY_CITY": CITY}  # fmt: skip
        procs.append(child(["ingest", "--metrics-port", "0", "--spool-dir", str(work / "spool")],
                           env, work / "ingest.log", "connected to broker"))  # fmt: skip
        port = free_port()
        gateway = child(["ocpp", "--host", "127.0.0.1", "--port", str(port), "--registry-url",
                         registry, "--state-dir", str(work / "ocpp"), "--heartbeat-interval",
                         "300"], env, work / "ocpp.log", "listening")  # fmt: skip
        procs.append(gateway)
        chargers = [Charger(cid, pw) for cid, pw in passwords.items()]
        url = f"ws://127.0.0.1:{port}/ocpp"

        async def session() -> None:
            sem = asyncio.Semaphore(50)

            async def opened(c: Charger) -> None:
                async with sem:
                    await c.open(url)

            t = time.monotonic()
            await asyncio.gather(*(opened(c) for c in chargers))
            print(f"connected {len(chargers)} chargers in {time.monotonic() - t:.1f} s")
            cpu0, t0 = proc_cpu_s(gateway.pid), time.monotonic()
            rss = [0.0]

            async def sample() -> None:
                while True:
                    rss[0] = max(rss[0], proc_rss_mb(gateway.pid))
                    await asyncio.sleep(1)

            sampler = asyncio.ensure_future(sample())
            await steady(chargers, opts.period, opts.duration)
            elapsed = time.monotonic() - t0
            cpu = (proc_cpu_s(gateway.pid) - cpu0) / elapsed * 100
            sampler.cancel()
            lat = sorted(x for c in chargers for x in c.latencies)
            sent = sum(c.sent for c in chargers)
            readings = sum(c.readings for c in chargers)
            held = sum(1 for c in chargers if c.point is not None)
            await asyncio.to_thread(wait_count, db, "bench", readings)
            p99 = lat[int(len(lat) * 0.99)] * 1000
            ok = p99 <= TARGET_P99_MS and held >= min(opts.chargers, TARGET_CHARGERS)
            print(f"steady: {held} connections held, {sent} messages in {elapsed:.0f} s = "
                  f"{sent / elapsed:.0f} msg/s, latency p50 {statistics.median(lat) * 1000:.1f} "
                  f"ms p99 {p99:.1f} ms, gateway CPU {cpu:.0f} % of a core, RSS peak "
                  f"{rss[0]:.0f} MB, {readings} readings all in InfluxDB "
                  f"[{'PASS' if ok else 'FAIL'}]")  # fmt: skip
            for c in chargers:
                c.latencies.clear()
            before = count(db, "bench")
            start_readings = sum(c.readings for c in chargers)
            t1 = time.monotonic()
            await burst(chargers, opts.burst)
            new = sum(c.readings for c in chargers) - start_readings
            answered = time.monotonic() - t1
            done = await asyncio.to_thread(wait_count, db, "bench", before + new)
            lat = sorted(x for c in chargers for x in c.latencies)
            print(f"burst: {new} readings answered in {answered:.1f} s "
                  f"({new / answered:.0f}/s, p99 {lat[int(len(lat) * 0.99)] * 1000:.0f} ms), all "
                  f"in InfluxDB after {done - t1:.1f} s = {new / (done - t1):.0f} readings/s "
                  "end to end")  # fmt: skip
            session_rate[0] = new / (done - t1)
            session_new[0] = new

        session_rate, session_new = [0.0], [0]
        asyncio.run(session())
        before = count(db, "bench")
        t2 = time.monotonic()
        direct(broker, session_new[0], opts.chargers)
        done = wait_count(db, "bench", before + session_new[0])
        rate = session_new[0] / (done - t2)
        print(f"direct to the broker: {session_new[0]} readings in InfluxDB after "
              f"{done - t2:.1f} s = {rate:.0f} readings/s; OCPP/direct = "
              f"{session_rate[0] / rate:.2f}")  # fmt: skip
    finally:
        for p in procs:
            p.terminate()
            p.wait(60)
        broker.stop()
        db.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
