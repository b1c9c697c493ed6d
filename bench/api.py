"""Benchmark: API latency under concurrent load, with data from 10,000 devices.

    .venv/bin/python bench/api.py [--devices 10000] [--minutes 30] [--concurrency 16]

Starts its own InfluxDB on a free port, fills it with ``--minutes`` of readings from a simulated
fleet at the devices' own rates (60 % street lights, 30 % bins, 10 % chargers, written through
the ingester's own conversion), preceded by a sparse history (one reading per device every
``--history-step`` minutes) back to ``--history-hours`` (24), so the KPIs that sum over 24 h have
24 h to sum over; registers every device, starts ``smartcity api`` as a separate process and sends
``--requests`` requests per endpoint from ``--concurrency`` concurrent clients. Prints p50/p99
per endpoint and each one's ratio to a baseline measured in the same run (a route that touches
neither InfluxDB nor the registry: the framework, middleware and client floor). Target: p99 at
most 100 ms for the catalogue and the latest reading.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest.convert import message_lines
from simulators.base import SimulatedDevice
from simulators.fleet import build_fleet, schedule
from smartcity.contract import Message, Telemetry, Topic
from smartcity.influx import InfluxWriter
from smartcity.registry.db import make_engine
from smartcity.registry.models import Device
from smartcity.settings import InfluxSettings
from stack.servers import Influxd, free_port

TARGET_P99_MS = 100.0


def sparse(
    fleet: list[SimulatedDevice], start: datetime, end: datetime, step: timedelta
) -> Iterator[tuple[datetime, SimulatedDevice]]:
    """Every device once per ``step`` from ``start`` until ``end``, in time order."""
    t = start
    while t < end:
        for dev in fleet:
            yield t, dev
        t += step


async def fill(
    influx_url: str, devices: int, minutes: float, end: datetime, history: float, step: float
) -> tuple[int, int, list[SimulatedDevice]]:
    """``minutes`` of readings at the devices' own rates up to ``end``, preceded by a sparse
    history (one reading per device every ``step`` minutes) back to ``history`` hours."""
    counts = {
        "streetlight": devices * 6 // 10,
        "wastebin": devices * 3 // 10,
        "evcharger": devices - devices * 6 // 10 - devices * 3 // 10,
    }
    fleet = build_fleet(7, counts)
    start = end - timedelta(minutes=minutes)
    writer = InfluxWriter(InfluxSettings(influx_url=influx_url, influx_db="bench"))
    await writer.ensure_database()
    batch: list[str] = []
    readings = [0, 0]  # sparse history, then the dense window
    dense = itertools.takewhile(lambda due_dev: due_dev[0] < end, schedule(fleet, start))
    past = sparse(fleet, end - timedelta(hours=history), start, timedelta(minutes=step))
    for i, part in enumerate((past, dense)):
        for due, dev in part:
            reading, _ = dev.read(due)
            body = Telemetry.model_construct(v=1, zone=dev.placement.zone, readings=[reading])
            where = Topic("cremona", dev.device_type.name, dev.device_id, "telemetry")
            batch += message_lines(Message(where, body), 0)
            readings[i] += 1
            if len(batch) >= 10_000:
                await writer.write(batch)
                batch = []
    await writer.write(batch)
    await writer.aclose()
    return readings[0], readings[1], fleet


def register(url: str, fleet: list) -> None:
    from sqlalchemy.orm import Session

    now = datetime.now(UTC)
    with Session(make_engine(url)) as session:
        session.add_all(
            Device(device_id=d.device_id, device_type=d.device_type.name, zone=d.placement.zone,
                   lat=d.placement.lat, lon=d.placement.lon, created_at=now, updated_at=now)
            for d in fleet
        )  # fmt: skip
        session.commit()


def start_api(port: int, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "smartcity", "api", "--port", str(port), "--log-level",
             "warning"], env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


async def load(
    client: httpx.AsyncClient, paths: Callable[[], str], requests: int, concurrency: int
) -> list[float]:
    """Latencies (ms) of ``requests`` GETs from ``concurrency`` workers."""
    latencies: list[float] = []
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            t0 = time.perf_counter()
            r = await client.get(paths())
            latencies.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200:
                raise RuntimeError(f"{r.status_code} for {r.request.url}: {r.text[:200]}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--minutes", type=float, default=30, help="of readings at full rate")
    ap.add_argument(
        "--history-hours",
        type=float,
        default=24,
        help="before those, a sparse history back this far, so 24 h KPIs sum over 24 h",
    )
    ap.add_argument("--history-step", type=float, default=15, help="minutes, in the history")
    ap.add_argument("--requests", type=int, default=2000, help="per endpoint")
    ap.add_argument(
        "--concurrency",
        default="1,4,16",
        help="concurrent clients, one run per comma-separated level",
    )
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-api-"))
    db = Influxd(workdir=work / "influxd", host="127.0.0.1", port=free_port())
    db.start()
    api = None
    try:
        end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        t0 = time.monotonic()
        history, readings, fleet = await fill(
            db.url, args.devices, args.minutes, end, args.history_hours, args.history_step
        )
        took = time.monotonic() - t0
        print(f"data: {args.devices:,} devices, {readings:,} readings over {args.minutes:g} min "
              f"after {history:,} over the {args.history_hours:g} h before (one per device "
              f"every {args.history_step:g} min), written in {took:.0f} s")  # fmt: skip
        registry = f"sqlite:///{work}/registry.db"
        register(registry, fleet)
        port = free_port()
        env = {**os.environ, "SMARTCITY_INFLUX_URL": db.url, "SMARTCITY_INFLUX_DB": "bench",
               "SMARTCITY_API_REGISTRY_URL": registry, "SMARTCITY_API_RATE_LIMIT": "1000000",
               "SMARTCITY_API_AS_OF": end.isoformat()}  # fmt: skip
        api = start_api(port, env, work / "api.log")
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            for _ in range(300):
                try:
                    if (await client.get("/v1/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            t0 = time.monotonic()
            await client.get("/v1/services")  # the first computation of the live state
            first = time.monotonic() - t0
            ids = [d.device_id for d in fleet]
            since = (end - timedelta(minutes=args.minutes)).isoformat()
            endpoints: dict[str, Callable[[], str]] = {
                "baseline (/v1/opendata/datasets)": lambda: "/v1/opendata/datasets",
                "catalogue (/v1/services)": lambda: "/v1/services",
                "latest (/v1/devices/{id}/latest)": lambda: (
                    f"/v1/devices/{random.choice(ids)}/latest"
                ),
                "series (1 h, 1 min, /series)": lambda: (
                    f"/v1/devices/{random.choice(ids[: len(ids) * 6 // 10])}/series"
                    f"?field=activePower&interval=1m&start={since.replace('+', '%2B')}"
                ),
            }
            levels = [int(c) for c in args.concurrency.split(",")]
            for paths in endpoints.values():  # warm up each route
                await load(client, paths, 50, max(levels))
            results = {
                level: {
                    name: await load(client, paths, args.requests, level)
                    for name, paths in endpoints.items()
                }
                for level in levels
            }
        print(f"first computation of the live state: {first * 1000:.0f} ms (then cached, "
              "refreshed in the background)")  # fmt: skip
        load1, load5, _ = os.getloadavg()
        print(
            f"machine: {os.cpu_count()} cores, load average {load1:.1f} (1 min) {load5:.1f} (5 min)"
        )
        met = True
        for level, by_endpoint in results.items():
            print(f"\n{args.requests:,} requests per endpoint, {level} concurrent clients")
            base_p50 = pct(next(iter(by_endpoint.values())), 50)
            print(f"{'endpoint':<36} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>7} {'p50/base':>9}")
            for name, lat in by_endpoint.items():
                p50, p99 = pct(lat, 50), pct(lat, 99)
                rate = len(lat) / (sum(lat) / 1000 / level)
                print(f"{name:<36} {p50:8.1f} {p99:8.1f} {rate:7.0f} {p50 / base_p50:8.1f}x")
                if name.startswith(("catalogue", "latest")) and p99 > TARGET_P99_MS:
                    met = False
                    print(f"  ^ p99 above the {TARGET_P99_MS:.0f} ms target")
        print(f"\ntarget p99 <= {TARGET_P99_MS:.0f} ms for catalogue and latest at every level: "
              f"{'met' if met else 'NOT met'}")  # fmt: skip
        return 0
    finally:
        if api is not None:
            api.send_signal(signal.SIGTERM)
            api.wait(30)
        db.stop()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
