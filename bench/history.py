"""History benchmark: a fleet's past backfilled through the real ingester, then what it costs.

    python bench/history.py [--devices 300] [--days 10] [--every 900] [--repeat 3]

1. Mosquitto, InfluxDB (the project's config: tsi1) and ``smartcity storage init``; then the
   real ingester (``smartcity ingest``) takes a backfill of ``--days`` of readings every
   ``--every`` seconds from ``--devices`` simulated devices (60 % street lights, 30 % bins,
   10 % chargers), published as edge backlogs (``--batch`` readings per message), so every
   window is late and rolled up by the ingester's late-window catch-up.
2. Disk per reading: raw (the ``autogen`` policy's shards) and with rollups (``hourly`` and
   ``daily`` added), once InfluxDB has compacted them (config: cold after 5 s).
3. p50/p99 latency, over 1 day, 30 days and the whole span, with and without rollups, of: the
   series endpoint (``/v1/devices/{id}/series``, 1 h steps, the API in-process), every open
   dataset, every declared KPI (its API statements and its panel's, ``smartcity.kpis``, from
   the resolution the readers pick for a window that long) and every other Grafana panel
   query (raw both ways: they read raw points). Without rollups = the same readers with the
   resolution forced to raw.
4. InfluxDB's RSS and series count.

The default size (300 devices, 10 days: 288,000 readings) ran in about 12 minutes on 2 cores
shared with other work (load 5-9): rolling up a backfill costs far more than storing it
(docs/operations.md has the figures and what they say about a year at city scale).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

from simulators.fleet import build_fleet  # noqa: E402
from simulators.publisher import AckingPublisher  # noqa: E402
from smartcity import retention  # noqa: E402
from smartcity.contract import encode_telemetry, topic  # noqa: E402
from smartcity.devices import DEVICE_TYPES  # noqa: E402
from stack.servers import Influxd, Mosquitto, free_port  # noqa: E402

DB = "bench"
CITY = "bench"
RANGES = {"1d": 1, "30d": 30}


class BenchInfluxd(Influxd):
    """The project's InfluxDB config, compacting cold shards within seconds, so disk figures
    are the compacted ones a long-running server reaches after hours."""

    def write_config(self) -> None:
        super().write_config()
        conf = self.workdir / "influxdb.conf"
        conf.write_text(
            conf.read_text().replace(
                "[data]\n",
                '[data]\n  cache-snapshot-write-cold-duration = "5s"\n'
                '  compact-full-write-cold-duration = "10s"\n',
            )
        )


def query(db: Influxd, q: str) -> dict[str, Any]:
    body = urllib.parse.urlencode({"db": DB, "q": q}).encode()
    with urllib.request.urlopen(f"{db.url}/query", body, timeout=600) as resp:
        result: dict[str, Any] = json.load(resp)["results"][0]
    if "error" in result:
        raise RuntimeError(f"{result['error']} in {q[:200]}")
    return result


def scalar(db: Influxd, q: str) -> int:
    series = query(db, q).get("series") or []
    return int(series[0]["values"][0][1]) if series else 0


def backfill(broker: Mosquitto, args: argparse.Namespace, start: datetime) -> int:
    """Every device's readings from ``start``, ``args.batch`` per message; returns readings."""
    counts = {"streetlight": args.devices * 6 // 10, "wastebin": args.devices * 3 // 10}
    counts["evcharger"] = args.devices - sum(counts.values())
    fleet = build_fleet(7, counts)
    pub = AckingPublisher(broker.url, "bench-history")
    pub.connect()
    steps = int(args.days * 86400 // args.every)
    sent = 0
    t0 = time.monotonic()
    try:
        for first in range(0, steps, args.batch):
            for dev in fleet:
                readings = []
                for k in range(first, min(first + args.batch, steps)):
                    due = start + timedelta(seconds=k * args.every + dev.rng.uniform(0, 30))
                    readings.append(dev.step(due, args.every)[0])
                t = topic(dev.device_type.name, dev.device_id, "telemetry", CITY)
                pub.publish(t, encode_telemetry(readings, dev.placement.zone), len(readings))
                sent += len(readings)
            done = min(first + args.batch, steps) / steps
            print(f"\r  published {sent:,} readings ({done:.0%}, "
                  f"{sent / (time.monotonic() - t0):,.0f}/s)", end="", file=sys.stderr)  # fmt: skip
        assert pub.drain(600), "the broker did not acknowledge every message"
    finally:
        pub.close()
    print(file=sys.stderr)
    return sent


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def disk(db: Influxd) -> dict[str, int]:
    """Bytes of each policy's shards (TSM and index), once compaction has settled."""
    base = db.workdir / "data" / DB
    last: dict[str, int] = {}
    for _ in range(60):
        now = {rp: du(base / rp) for rp in ("autogen", "hourly", "daily") if (base / rp).exists()}
        wal = du(db.workdir / "wal" / DB)
        if now == last and wal < 64 * 1024:
            return now
        last = now
        time.sleep(5)
    return last


def rss_mb(pid: int) -> float:
    for text in Path(f"/proc/{pid}/status").read_text().splitlines():
        if text.startswith("VmRSS:"):
            return int(text.split()[1]) / 1024
    return 0.0


@contextmanager
def forced_raw(on: bool) -> Iterator[None]:
    """Readers with the resolution forced to raw: 'without rollups'."""
    if not on:
        yield
        return
    choose = retention.choose
    retention.choose = lambda *a, **k: retention.RAW
    try:
        yield
    finally:
        retention.choose = choose


async def timed(fn: Callable[[], Awaitable[object]], repeat: int) -> list[float]:
    await fn()  # warm
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t0)
    return out


def p(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def panel_queries() -> list[tuple[str, str]]:
    """Every Grafana panel query of the committed boards, by board and panel title."""
    out = []
    for path in sorted((ROOT / "grafana" / "dashboards").glob("*/*.json")):
        board = json.loads(path.read_text())

        def walk(panel: dict[str, Any], board_uid: str = board["uid"]) -> None:
            for t in panel.get("targets") or []:
                if t.get("query"):
                    name = f"{board_uid}/{panel.get('title', '?')} {t.get('refId', '')}"
                    out.append((name, t["query"]))
            for child in panel.get("panels") or []:
                walk(child)

        for panel in board.get("panels", []):
            walk(panel)
    return out


def grafana_text(q: str, days: float) -> str:
    """A panel query as Grafana sends it for the last ``days`` (all zones and types)."""
    interval = max(10, int(days * 86400 / 1000))  # Grafana's: range / ~1000 pixels
    return (
        q.replace("$timeFilter", f"time > now() - {int(days * 86400)}s")
        .replace("$__interval", f"{interval}s")
        .replace("$zone", ".*")
        .replace("$device_type", ".*")
    )


async def latencies(db: Influxd, args: argparse.Namespace, span_days: float) -> list[str]:
    """The latency table's lines."""
    import httpx

    from api.app import create_app
    from api.opendata import datasets
    from api.settings import ApiSettings
    from smartcity.influx import InfluxReader
    from smartcity.settings import InfluxSettings

    ranges = {**RANGES, "span": span_days}
    lines = [f"{'query':58} {'range':>5} {'rollups p50/p99 s':>18} {'raw p50/p99 s':>16} ratio"]
    settings = ApiSettings(
        influx_url=db.url, influx_db=DB, registry_url=f"sqlite:///{db.workdir}/registry.db",
        kpi_cache_seconds=0,
        rate_limit=1_000_000, max_range_days=3660, max_series_points=100_000,
    )  # fmt: skip
    reader = InfluxReader(InfluxSettings(influx_url=db.url, influx_db=DB), timeout=600)
    app = create_app(settings)
    now = datetime.now(UTC)
    worst = (0.0, "")

    def row(name: str, rng: str, with_: list[float], without: list[float]) -> str:
        ratio = statistics.median(without) / max(statistics.median(with_), 1e-9)
        return (
            f"{name[:58]:58} {rng:>5} {p(with_, 0.5):8.3f}/{p(with_, 0.99):<8.3f} "
            f"{p(without, 0.5):7.3f}/{p(without, 0.99):<8.3f} {ratio:5.1f}x"
        )

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            for rng, days in ranges.items():
                start = (now - timedelta(days=days)).replace(minute=0, second=0, microsecond=0)

                async def series(start: datetime = start) -> None:
                    r = await client.get(
                        "/v1/devices/sl-00001/series",
                        params={"field": "activePower", "interval": "1h",
                                "start": start.isoformat(), "end": now.isoformat()},
                    )  # fmt: skip
                    assert r.status_code == 200, r.text

                cases: list[tuple[str, Callable[[], Awaitable[object]]]] = [
                    ("API series 1h steps", series)
                ]
                first = (now - timedelta(days=days)).astimezone(datasets.LOCAL).date()
                span = datasets.Days(first, now.astimezone(datasets.LOCAL).date())
                for name, ds in datasets.DATASETS.items():
                    if ds.daily:
                        cases.append(
                            (f"open data {name}", functools.partial(ds.build, reader, None, span))  # type: ignore[arg-type]
                        )
                pairs = [(name, fn, fn) for name, fn in cases]
                pairs += kpi_cases(reader, start, now, days)
                titles = {k.title_it for t in DEVICE_TYPES.values() for k in t.kpis}
                for name, text in panel_queries():
                    if name.rsplit(" ", 1)[0].split("/", 1)[1] in titles:
                        continue  # a KPI panel: measured from its declaration above

                    async def panel(text: str = text, days: float = days) -> None:
                        await reader.client.query(grafana_text(text, days))

                    pairs.append((f"grafana {name}", panel, panel))
                for name, with_fn, without_fn in pairs:
                    with forced_raw(False):
                        w = await timed(with_fn, args.repeat)
                    with forced_raw(True):
                        wo = await timed(without_fn, args.repeat)
                    lines.append(row(name, rng, w, wo))
                    if rng == "span":
                        worst = max(worst, (p(w, 0.99), name))
    await reader.aclose()
    lines.append(f"slowest p99 over the whole span with rollups: {worst[0]:.3f} s ({worst[1]})")
    return lines


Case = tuple[str, Callable[[], Awaitable[object]], Callable[[], Awaitable[object]]]


def kpi_cases(reader: Any, start: datetime, end: datetime, days: float) -> list[Case]:
    """Every declared KPI over the range, as the API runs it and as its Grafana panel does,
    from the resolution the readers choose for a window that long, and from raw points."""
    from dataclasses import replace

    from grafana.queries import DEVICE_TYPE, TIME_FILTER, ZONE
    from smartcity.influx import at
    from smartcity.kpis import NOW_MEASURES, Hours, Kpi, Rollup, statements

    bounds = {"from": at(start), "to": at(end)}
    out: list[Case] = []
    for device in DEVICE_TYPES.values():
        for kpi in device.kpis:
            now = isinstance(kpi.measure, NOW_MEASURES)
            probe = kpi if now else replace(kpi, window=Hours(max(1, round(days * 24))))
            rollup = retention.kpi_rollup(probe)

            async def api(kpi: Kpi = kpi, rollup: Rollup | None = rollup) -> None:
                for q in statements(kpi, "time > $from AND time <= $to", rollup=rollup):
                    await reader.rows(q, bounds)

            async def board(kpi: Kpi = kpi, rollup: Rollup | None = rollup) -> None:
                for q in statements(kpi, TIME_FILTER, (ZONE, DEVICE_TYPE), rollup=rollup):
                    await reader.client.query(grafana_text(q, days))

            out.append((f"KPI {kpi.id} (API)", api, functools.partial(api, rollup=None)))
            out.append((f"KPI {kpi.id} (panel)", board, functools.partial(board, rollup=None)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--devices", type=int, default=300)
    ap.add_argument("--days", type=float, default=10.0)
    ap.add_argument("--every", type=float, default=900.0, help="seconds between readings")
    ap.add_argument("--batch", type=int, default=96, help="readings per message (a backlog)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per query")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-history-"))
    work.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    print(f"# bench/history.py {args.devices} devices, {args.days:g} days every {args.every:g} s;"
          f" load average at start {load[0]:.2f} on {os.cpu_count()} cores")  # fmt: skip
    broker = Mosquitto(workdir=work / "mosquitto", host="127.0.0.1", port=free_port())
    db = BenchInfluxd(workdir=work / "influxd", host="127.0.0.1", port=free_port())
    broker.start()
    db.start()
    env = {**os.environ, "SMARTCITY_MQTT_URL": broker.url, "SMARTCITY_INFLUX_URL": db.url,
           "SMARTCITY_INFLUX_DB": DB, "SMARTCITY_CITY": CITY}  # fmt: skip
    me = [sys.executable, "-m", "smartcity"]
    ingester = None
    try:
        subprocess.run([*me, "storage", "init"], env=env, check=True, cwd=work)
        ingester = subprocess.Popen(
            [*me, "ingest", "--metrics-port", "0", "--spool-dir", str(work / "spool"),
             "--rollup-interval", "5", "--client-id", "bench-ingest"],
            env=env, cwd=work, stdout=(work / "ingest.log").open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        time.sleep(3)
        start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=args.days)
        t0 = time.monotonic()
        readings = backfill(broker, args, start)
        stored = 0
        while stored < readings:
            time.sleep(2)
            stored = sum(
                scalar(db, f'SELECT count("seq") FROM "{m}"')
                for m in ("streetlight", "wastebin", "evcharger")
            )
        ingest_s = time.monotonic() - t0
        while scalar(db, 'SELECT count("hour") FROM "rollup_pending"'):
            time.sleep(2)
        rolled_s = time.monotonic() - t0
        print(f"ingested {stored:,} readings in {ingest_s:.0f} s "
              f"({stored / ingest_s:,.0f}/s), rolled up by {rolled_s:.0f} s")  # fmt: skip
        sizes = disk(db)
        raw = sizes.get("autogen", 0)
        rollups = sizes.get("hourly", 0) + sizes.get("daily", 0)
        print(f"disk: raw {raw / stored:.2f} bytes/reading ({raw / 1e6:.1f} MB); rollups "
              f"hourly {sizes.get('hourly', 0) / 1e6:.1f} MB + daily "
              f"{sizes.get('daily', 0) / 1e6:.1f} MB; with rollups "
              f"{(raw + rollups) / stored:.2f} bytes/reading")  # fmt: skip
        found = query(db, f'SHOW SERIES EXACT CARDINALITY ON "{DB}"').get("series") or []
        series = sum(int(s["values"][0][0]) for s in found)
        assert db.proc is not None
        print(f"influxd RSS {rss_mb(db.proc.pid):.0f} MB, series {series:,}")
        for text in asyncio.run(latencies(db, args, args.days)):
            print(text)
        load = os.getloadavg()
        print(f"# load average at end {load[0]:.2f} (1 min) {load[1]:.2f} (5 min)")
    finally:
        if ingester is not None:
            ingester.terminate()
            ingester.wait(60)
        db.stop()
        broker.stop()


if __name__ == "__main__":
    main()
