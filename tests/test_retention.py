"""Retention policies, rollups, late readings and backups, on real InfluxDB (and Mosquitto,
the ingester, SQLite) processes.

Each test has a database of its own on the session's InfluxDB; the backup test restores into
a fresh InfluxDB of its own.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session

from api.app import create_app
from api.opendata import datasets
from api.opendata.registry import DATASETS
from api.security import create_key
from api.settings import ApiSettings
from simulators.publisher import AckingPublisher
from smartcity import audit, retention
from smartcity.contract import encode_events, encode_telemetry, topic
from smartcity.devices.base import point_time_ns
from smartcity.devices.wastebin import BinEmptied, WastebinReading
from smartcity.influx import InfluxReader
from smartcity.kpis import (
    DeviceMean,
    Exceedances,
    Hours,
    Increase,
    Kpi,
    Ratio,
    Rollup,
    Total,
    Where,
    combine,
    statements,
)
from smartcity.lineprotocol import line
from smartcity.registry.db import make_engine
from smartcity.registry.models import ApiKey, AuditEntry, Device
from smartcity.settings import InfluxSettings
from smartcity.storage import (
    EVENT_COUNT_FIELD,
    HOURLY_RETENTION_POLICY,
    ROLLUP_PENDING_MEASUREMENT,
    rollup_field,
)
from stack.servers import Influxd, Mosquitto, Postgres

from .conftest import Influx, IngesterProcess, run_smartcity, smartcity_env

HOUR = 3600


def lamp_lines(device: str, start: datetime, n: int, every_s: float) -> list[str]:
    """``n`` street-light points from ``start``, as the ingester writes them."""
    out = []
    for i in range(n):
        t = start + timedelta(seconds=i * every_s)
        fields = {"seq": i, "powerState": "on", "illuminanceLevel": 1.0,
                  "activePower": 40.0 + (i * 7) % 31, "totalActiveEnergyImport": 100.0 + i * 0.05,
                  "voltage": 230.0, "current": 0.2, "ratedPower": 70.0, "status": "ok"}  # fmt: skip
        tags = {"device_id": device, "device_type": "streetlight", "zone": "Centro"}
        out.append(line("streetlight", tags, fields, point_time_ns(t, i)))
    return out


def write(influx: Influx, lines: list[str]) -> None:
    import urllib.request

    url = f"{influx.url}/write?db={influx.db}&precision=ns"
    for i in range(0, len(lines), 5000):
        body = "\n".join(lines[i : i + 5000]).encode()
        with urllib.request.urlopen(url, body, timeout=30) as resp:
            assert resp.status == 204


def create_db(influx: Influx) -> None:
    import urllib.parse
    import urllib.request

    body = urllib.parse.urlencode({"q": f'CREATE DATABASE "{influx.db}"'}).encode()
    urllib.request.urlopen(f"{influx.url}/query", body, timeout=10).close()


def hours_ago(h: float) -> datetime:
    now = datetime.now(UTC)
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=h)


def env_of(influx: Influx) -> dict[str, str]:
    return smartcity_env("mqtt://127.0.0.1:1", influx, "cremona")


def own_continuous_queries(influx: Influx) -> list[dict[str, object]]:
    """This test's database's continuous queries: the server lists every database's, one series
    each, and other tests' databases share the server."""
    rows = influx.query("SHOW CONTINUOUS QUERIES")
    return [r for r in rows if r.get("_measurement") == influx.db and "name" in r]


def test_storage_init_is_idempotent_and_keeps_the_data_it_finds(influx: Influx) -> None:
    """On a database that already holds readings: policies, queries, and the history rolled
    up before the raw policy is shortened; a second run changes nothing and loses nothing."""
    create_db(influx)
    start = hours_ago(50) + timedelta(minutes=7)
    write(influx, lamp_lines("sl-1", start, 240, 600))  # 40 hours, a reading every 10 minutes
    before = influx.count("streetlight")

    first = run_smartcity("storage", "init", "--raw-retention", "30d", env=env_of(influx))
    assert first.returncode == 0, first.stderr
    assert "policies created: hourly, daily" in first.stdout
    second = run_smartcity("storage", "init", "--raw-retention", "30d", env=env_of(influx))
    assert second.returncode == 0, second.stderr
    assert "policies created: none; altered: none; continuous queries created: 0" in second.stdout

    assert influx.count("streetlight") == before == 240
    policies = {r["name"]: r["duration"] for r in influx.query("SHOW RETENTION POLICIES")}
    assert policies == {"autogen": "720h0m0s", "hourly": "0s", "daily": "0s"}
    queries = {str(r["name"]) for r in own_continuous_queries(influx)}
    assert queries == set(retention.continuous_queries(influx.db))
    # the history found was rolled up: every reading is counted once in the hourly windows
    f = rollup_field("activePower", "count")
    rolled = influx.query(f'SELECT sum("{f}") AS n FROM "hourly"."streetlight"')
    assert rolled[0]["n"] == 240
    daily = influx.query(f'SELECT sum("{f}") AS n FROM "daily"."streetlight"')
    assert daily[0]["n"] == 240
    # a changed schedule replaces the hourly queries, and only them
    third = run_smartcity("storage", "init", "--raw-retention", "30d", "--hourly-refresh", "30m",
                          env=env_of(influx))  # fmt: skip
    hourly = len(retention.sources())
    assert f"continuous queries created: {hourly}, dropped: {hourly}" in third.stdout
    texts = [str(r["query"]) for r in own_continuous_queries(influx)]
    assert sum("RESAMPLE EVERY 30m FOR 2h" in t for t in texts) == hourly


def test_readings_two_days_late_are_rolled_up(
    mosquitto: Mosquitto, influx: Influx, city: str, tmp_path: Path
) -> None:
    """An outbox flushed two days late through the real ingester: the window that was rolled
    up without those readings is recomputed, and so is the day."""
    assert run_smartcity("storage", "init", env=env_of(influx)).returncode == 0
    env = smartcity_env(mosquitto.url, influx, city)
    ingester = IngesterProcess(
        env, tmp_path / "ingest.log", "--client-id", f"ingest-{city}", "--spool-dir",
        str(tmp_path / "spool"), "--metrics-port", "0", "--rollup-interval", "0.5",
        "--rollup-delay", "2",
    ).start()  # fmt: skip
    window = hours_ago(48)
    pub = AckingPublisher(mosquitto.url, f"edge-{city}")
    pub.connect()
    try:
        ingester.wait_subscribed()

        def send(seqs: range) -> None:
            readings = [
                WastebinReading(
                    ts=window + timedelta(minutes=5 * i + 1), seq=i, fillingLevel=i / 20,
                    temperature=20.0, storedWasteKind="paper", status="ok", batteryLevel=0.9,
                )
                for i in seqs
            ]  # fmt: skip
            pub.publish(topic("wastebin", "wb-late", "telemetry", city), encode_telemetry(readings))
            assert pub.drain(30)

        f = rollup_field("fillingLevel", "count")

        def rolled() -> tuple[object, object]:
            q = f'SELECT "{f}", "fillingLevel_max" FROM "hourly"."wastebin" WHERE device_id = $d'
            rows = influx.query(q, d="wb-late")
            return (rows[0][f], rows[0]["fillingLevel_max"]) if rows else (None, None)

        def settle(readings: int) -> None:
            """Until the readings are stored and the windows they marked recomputed."""
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                left = influx.query(f'SELECT count(*) FROM "{ROLLUP_PENDING_MEASUREMENT}"')
                if influx.count("wastebin") == readings and not left:
                    return
                time.sleep(0.2)
            raise AssertionError(f"late windows not rolled up:\n{ingester.log()}")

        send(range(6))  # the first half of the hour, two days late
        settle(6)
        assert rolled() == (6, 5 / 20), ingester.log()
        send(range(6, 12))  # the rest of that hour arrives later still
        settle(12)
        assert rolled() == (12, 11 / 20)
        day = influx.query(
            f'SELECT "{f}" FROM "daily"."wastebin" WHERE device_id = $d', d="wb-late"
        )
        assert [r[f] for r in day] == [12]
        # an event two days late is counted too
        emptied = BinEmptied(ts=window + timedelta(minutes=3), kind="emptied",
                             collectedLevel=0.8, storedWasteKind="paper")  # fmt: skip
        pub.publish(topic("wastebin", "wb-late", "events", city), encode_events([emptied]))
        assert pub.drain(30)
        deadline = time.monotonic() + 30
        while not influx.query('SELECT * FROM "hourly"."wastebin_event"'):
            assert time.monotonic() < deadline, ingester.log()
            time.sleep(0.2)
        (event,) = influx.query(
            'SELECT "count", "collectedLevel_sum" FROM "hourly"."wastebin_event"'
        )
        assert (event["count"], event["collectedLevel_sum"]) == (1, 0.8)
    finally:
        pub.close()
        ingester.stop()


def empty_registry(request: pytest.FixtureRequest, backend: str, path: Path) -> str:
    """A new registry: an SQLite file, or a new database on the session's PostgreSQL."""
    if backend == "sqlite":
        return f"sqlite:///{path}"
    server: Postgres = request.getfixturevalue("postgres")
    database = f"registry_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server.url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{database}"'))  # a name of our own making
    finally:
        admin.dispose()
    return server.url(database)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_backup_restores_every_point_device_key_and_audit_entry(
    influx: Influx,
    influxd: Influxd,
    own_influxd: Influxd,
    tmp_path: Path,
    backend: str,
    request: pytest.FixtureRequest,
) -> None:
    create_db(influx)
    write(influx, lamp_lines("sl-b", hours_ago(30), 300, 300))
    assert run_smartcity("storage", "init", env=env_of(influx)).returncode == 0
    registry = empty_registry(request, backend, tmp_path / "registry.db")
    engine = make_engine(registry)
    now = datetime.now(UTC)
    with Session(engine) as session:
        for i in range(3):
            session.add(Device(device_id=f"sl-{i}", device_type="streetlight", zone="Centro",
                               lat=45.1, lon=10.0, created_at=now, updated_at=now))  # fmt: skip
        create_key(session, "ops", "operate")
        audit.record(session, actor="cli", action="device.create", outcome="ok", device_id="sl-0")
        session.commit()
    engine.dispose()

    backup = tmp_path / "backup"
    env = env_of(influx)
    out = run_smartcity(
        "backup", str(backup), "--influx-rpc", f"127.0.0.1:{influxd.rpc_port}",
        "--registry-url", registry, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["influxdb"]["points"]["autogen"]["streetlight"] == 300
    assert manifest["influxdb"]["points"][HOURLY_RETENTION_POLICY]["streetlight"] > 0
    counts = manifest["registry"]["counts"]
    assert counts["devices"] == 3
    assert counts["api_keys"] == 1
    assert counts["audit_entries"] >= 1

    # into a fresh InfluxDB and a new registry file
    restored = empty_registry(request, backend, tmp_path / "restored.db")
    fresh = Influx(own_influxd.url, influx.db)
    out = run_smartcity(
        "restore", str(backup), "--influx-rpc", f"127.0.0.1:{own_influxd.rpc_port}",
        "--registry-url", restored, env=env_of(fresh),
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "every point, device, key and audit entry" in out.stdout
    assert fresh.count("streetlight") == 300
    for rp, measurements in manifest["influxdb"]["points"].items():
        for m, n in measurements.items():
            got = fresh.query(f'SELECT count(*) FROM "{rp}"."{m}"')
            assert max(v for k, v in got[0].items() if k.startswith("count_")) == n, (rp, m)
    queries = {r["name"] for r in fresh.query("SHOW CONTINUOUS QUERIES") if "name" in r}
    assert queries == set(retention.continuous_queries(influx.db))
    engine = make_engine(restored, create=False)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Device)) == 3
        assert session.scalar(select(func.count()).select_from(ApiKey)) == 1
        entries = session.scalar(select(func.count()).select_from(AuditEntry))
        assert entries == counts["audit_entries"]
    engine.dispose()

    # a second restore onto the same servers is refused, saying why
    again = run_smartcity(
        "restore", str(backup), "--influx-rpc", f"127.0.0.1:{own_influxd.rpc_port}",
        "--registry-url", restored, env=env_of(fresh),
    )  # fmt: skip
    assert again.returncode == 1
    assert "exists" in again.stderr or "must be empty" in again.stderr, again.stderr


@pytest.mark.parametrize("duration", ["12h", "90", "forever"])
def test_bad_retention_is_refused_with_the_fix(influx: Influx, duration: str) -> None:
    out = run_smartcity("storage", "init", "--raw-retention", duration, env=env_of(influx))
    assert out.returncode == 2
    assert "raw_retention" in out.stderr or "raw-retention" in out.stderr


async def series(client: httpx.AsyncClient, device: str, **params: str) -> dict[str, Any]:
    resp = await client.get(f"/v1/devices/{device}/series", params=params)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


async def test_series_agree_from_raw_readings_and_from_rollups(
    influx: Influx, tmp_path: Path
) -> None:
    """Data present at every resolution: the series from rollups (long ranges) are the raw
    readings' own aggregates, and the answer says which it read."""
    create_db(influx)
    end = hours_ago(24)
    start = end - timedelta(days=63)
    lines = lamp_lines("sl-r", start + timedelta(minutes=7), 63 * 72, 1200)  # every 20 minutes
    lines += lamp_lines("sl-r", datetime.now(UTC) - timedelta(minutes=1), 1, 1)  # a live one
    write(influx, lines)
    assert run_smartcity("storage", "init", env=env_of(influx)).returncode == 0
    settings = ApiSettings(  # type: ignore[call-arg]
        influx_url=influx.url, influx_db=influx.db, registry_url=f"sqlite:///{tmp_path}/r.db"
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            for agg in ("mean", "max", "min", "last"):
                common = {"field": "activePower", "agg": agg}
                # three days hourly from the hourly rollup, against each day from raw readings
                a = end - timedelta(days=10)
                rolled = await series(client, "sl-r", **common, interval="1h",
                                      start=iso(a), end=iso(a + timedelta(days=3)))  # fmt: skip
                assert rolled["resolution"] == "hourly"
                raw: list[dict[str, Any]] = []
                for d in range(3):
                    day = await series(client, "sl-r", **common, interval="1h",
                                       start=iso(a + timedelta(days=d)),
                                       end=iso(a + timedelta(days=d + 1)))  # fmt: skip
                    assert day["resolution"] == "raw"
                    raw += day["points"]
                assert len(rolled["points"]) == len(raw) == 72
                for r, p in zip(rolled["points"], raw, strict=True):
                    assert r["time"] == p["time"]
                    assert r["value"] == pytest.approx(p["value"], rel=1e-9)
                # sixty-one days daily from the daily rollup, against InfluxDB on raw readings
                b = end.replace(hour=0) - timedelta(days=61)
                daily = await series(client, "sl-r", **common, interval="1d",
                                     start=iso(b), end=iso(b + timedelta(days=61)))  # fmt: skip
                assert daily["resolution"] == "daily"
                direct = influx.query(
                    f'SELECT {agg}("activePower") AS v FROM "streetlight" WHERE time >= $a '
                    "AND time < $b GROUP BY time(1d) fill(none)",
                    a=iso(b), b=iso(b + timedelta(days=61)),
                )  # fmt: skip
                assert [p["value"] for p in daily["points"]] == pytest.approx(
                    [r["v"] for r in direct], rel=1e-9
                )
            # a long range up to now: rollups, then the newest readings from raw
            recent = await series(client, "sl-r", field="activePower", interval="1h",
                                  start=iso(end - timedelta(days=3)),
                                  end=iso(datetime.now(UTC)))  # fmt: skip
            assert recent["resolution"] == "hourly"
            newest = datetime.fromisoformat(recent["points"][-1]["time"])
            assert newest == hours_ago(0)


async def test_open_data_agrees_from_raw_readings_and_from_rollups(
    influx: Influx, tmp_path: Path
) -> None:
    """Daily open datasets over a long range (hourly rollups, whole local days) against the
    same days asked one by one (raw readings)."""
    create_db(influx)
    first = hours_ago(24 * 6)
    lines = lamp_lines("sl-o", first + timedelta(minutes=3), 5 * 48, 1800)
    for i in range(5 * 24):  # a collection and a charging session every hour
        t = first + timedelta(hours=i, minutes=11)
        lines.append(
            line(
                "wastebin_event",
                {
                    "device_id": "wb-o",
                    "device_type": "wastebin",
                    "kind": "emptied",
                    "waste_kind": "paper",
                    "zone": "Centro",
                },
                {"collectedLevel": 0.5 + (i % 5) / 10, "count": 1},
                point_time_ns(t),
            )
        )
        lines.append(line("evcharger_event", {"connector_id": "1", "device_id": "ev-o",
                          "device_type": "evcharger", "kind": "sessionStop", "zone": "Po"},
                          {"sessionId": f"s{i}", "energy": 5.0 + i % 7, "duration": 600.0 + i,
                           "count": 1}, point_time_ns(t)))  # fmt: skip
    for i in range(5 * 24 * 3):  # an air-quality station every 20 minutes
        t = first + timedelta(minutes=20 * i + 7)
        pollutants = {"pm10": 20.0 + i % 37, "pm25": 10.0 + i % 13, "no2": 30.0 + i % 41,
                      "o3": 50.0 + i % 23, "co": 0.3 + (i % 7) / 10}  # fmt: skip
        tags = {"device_id": "aq-o", "device_type": "airquality", "zone": "Centro"}
        lines.append(line("airquality", tags, pollutants, point_time_ns(t, i)))
    write(influx, lines)
    assert run_smartcity("storage", "init", env=env_of(influx)).returncode == 0
    reader = InfluxReader(InfluxSettings(influx_url=influx.url, influx_db=influx.db))
    engine = make_engine(f"sqlite:///{tmp_path / 'registry.db'}")  # stations' places: none here
    try:
        local = first.astimezone(datasets.LOCAL).date() + timedelta(days=1)
        span = datasets.Days(local, local + timedelta(days=3))
        assert [r.name for r, _ in datasets.parts(span)] == ["hourly"]
        for dataset in [d for d in DATASETS if d != "devices"]:
            build = DATASETS[dataset].build
            together = await build(reader, engine, span)
            one_by_one = []
            for d in range(4):
                day = datasets.Days(local + timedelta(days=d), local + timedelta(days=d))
                assert [r.name for r, _ in datasets.parts(day)] == ["raw"]
                one_by_one += await build(reader, engine, day)
            assert len(together) == 4, dataset
            assert together == one_by_one, dataset
    finally:
        await reader.aclose()


def test_every_kind_of_kpi_measure_gives_the_same_from_rollups(influx: Influx) -> None:
    """The one KPI generator's rollup statements against its raw ones, for every kind of
    measure a long window can use, on readings present at both resolutions (several per
    device and hour, so a sum is not a max)."""
    create_db(influx)
    start = hours_ago(24 * 4) + timedelta(minutes=2)
    lines = lamp_lines("sl-k1", start, 4 * 24 * 6, 600) + lamp_lines("sl-k2", start, 300, 700)
    for i in range(4 * 24 * 3):  # three collections an hour, some residual
        t = start + timedelta(minutes=20 * i)
        kind = "residual" if i % 4 == 0 else "paper"
        tags = {"device_id": f"wb-k{i % 2}", "device_type": "wastebin", "kind": "emptied",
                "waste_kind": kind, "zone": "Po"}  # fmt: skip
        lines.append(line("wastebin_event", tags, {"collectedLevel": 0.3 + (i % 7) / 10,
                          "count": 1}, point_time_ns(t)))  # fmt: skip
    write(influx, lines)
    assert run_smartcity("storage", "init", env=env_of(influx)).returncode == 0
    sl, ev, window = "streetlight", "wastebin_event", Hours(24 * 5)
    emptied = Where("kind", "=", "emptied")
    measures = {
        "sum": Total(ev, "collectedLevel", (emptied,)),
        "count": Total(ev, EVENT_COUNT_FIELD, (emptied,)),
        "mean": Total(sl, "activePower", aggregate="mean"),
        "max": Total(sl, "activePower", aggregate="max"),
        "minus": Total(sl, "ratedPower", minus="activePower", scale=0.001),
        "ratio": Ratio(
            Total(ev, "collectedLevel", (emptied, Where("waste_kind", "!=", "residual"))),
            Total(ev, "collectedLevel", (emptied,)),
        ),
        "increase": Increase(sl, "totalActiveEnergyImport"),
        "device_mean": DeviceMean(sl, "activePower"),
        "exceed_h": Exceedances(sl, "activePower", "1h", 55.0),
        "exceed_d": Exceedances(sl, "activePower", "1d", 55.0),
    }
    end = datetime.now(UTC)
    bounds = {"from": iso(window.start(end)), "to": iso(end)}
    for name, measure in measures.items():
        kpi = Kpi(name, name, name, "count", measure, window)
        rollup = retention.kpi_rollup(kpi)
        assert rollup is not None, name

        def value(r: Rollup | None, kpi: Kpi = kpi) -> float | None:
            results = []
            for q in statements(kpi, "time > $from AND time <= $to", rollup=r):
                rows = influx.query(q, **bounds)
                results.append(float(rows[0]["value"]) if rows else None)  # type: ignore[arg-type]
            return combine(kpi, results)

        raw = value(None)
        assert raw not in (None, 0.0), name
        assert value(rollup) == pytest.approx(raw, rel=1e-9), name
    # a condition on a field cannot be read from rollups: such a KPI stays raw
    on = Kpi("on", "on", "on", "count", Total(sl, "activePower", (Where("activePower", ">", 0),)),
             window)  # fmt: skip
    assert retention.kpi_rollup(on) is None
    assert retention.kpi_rollup(Kpi("d", "d", "d", "count", measures["sum"], Hours(24))) is None
