"""Every board query and alert query, run on the real InfluxDB filled by the simulator.

The database is filled the way production fills it: ``smartcity simulate`` (a day of a seeded
fleet with raised fault rates) and hand-made messages for a few devices in a known state (a
failed lamp, a burning bin, a faulted charger, a device gone offline, an edge agent with an
error, an invalid message), all through MQTT and the real ingester. The pipeline board and the
"ingest stalled" rule read the health figures that same ingester writes (``ingest_stats``,
``broker_stats``, reported every ``STATS_INTERVAL`` seconds here instead of 10), so a field the
ingester renames or stops writing fails these tests.

Grafana's macros and variables are substituted the way Grafana's InfluxDB data source does
(``tests/grafana_emulation.py``): ``$timeFilter`` becomes ``time >= {from}ms and time <= {to}ms``,
``$__interval`` the rounded auto interval, ``$zone``/``$device_type`` the regex-escaped
``(a|b)`` form or the ``.*`` all-value.

What cannot be checked without a Grafana server, so no test here claims it:

* that Grafana renders the panels (geomap markers, colours, value mappings, layout);
* Grafana's own interpolation code: the tests mirror its documented rules, not its code;
* the alerting scheduler: ``for`` durations, notifications, no-data and error handling beyond
  the reduce-and-threshold arithmetic evaluated here;
* that Grafana accepts the provisioning files and the HTTP API payloads: their shape is
  checked against grafana-foundation-sdk's models and a fake API (``test_grafana_push.py``).
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from grafana.boards import overview, pipeline
from grafana.panels import PANELS
from simulators.fleet import build_fleet, schedule
from simulators.publisher import AckingPublisher
from smartcity import commands, storage
from smartcity.city import TIMEZONE
from smartcity.contract import (
    CommandResult,
    Health,
    Location,
    Status,
    encode,
    encode_events,
    encode_telemetry,
    topic,
)
from smartcity.devices import DEVICE_TYPES
from smartcity.devices.airquality import AirqualityReading
from smartcity.devices.evcharger import Connector, EvchargerReading
from smartcity.devices.streetlight import LampStatusChanged, StreetlightReading
from smartcity.devices.wastebin import BinEmptied, WastebinReading
from smartcity.lineprotocol import line
from stack.servers import Mosquitto, free_port

from . import grafana_emulation as grafana
from .conftest import Influx, IngesterProcess, run_smartcity, running, smartcity_env

GRAFANA = Path(__file__).parents[1] / "grafana"
FLEET = {"streetlight": 10, "wastebin": 60, "evcharger": 6, "airquality": 4}
SEED = 5
FAULT_RATE = 50
#: A day and two hours: always one morning collection round and one day of charging.
HISTORY = timedelta(hours=26)
RANGE = grafana.Range(int((HISTORY + timedelta(hours=1)).total_seconds()))
#: The pipeline board as the platform team watches it: the last 15 minutes, 10 s intervals.
PIPELINE_RANGE = grafana.Range(15 * 60)
#: Seconds between the ingester's health figures in these tests (10 in production).
STATS_INTERVAL = 0.5
ZONE = "Sant'Ambrogio"
#: Devices sent in a known state, by what should alert about them.
FAILED_LAMP, BURNING_BIN, FAULTED_CHARGER, GONE_OFFLINE, EDGE_AGENT = (
    "sl-guasto",
    "wb-fuoco",
    "ev-guasto",
    "sl-spento",
    "sl-edge",
)
#: An air-quality station over every limit, and one with a failed sensor.
POLLUTED_STATION, FAULTED_STATION = "aq-smog", "aq-guasta"
#: Readings the known-state devices add to each type's measurement.
KNOWN_READINGS = {"streetlight": 3, "wastebin": 3, "evcharger": 1, "airquality": 6}
#: A command to one device of each type (the ``sent`` point as the API writes it) and the
#: device's answer over MQTT (the ingester stores it): (device type, device, name, args, reason).
COMMANDS = (
    ("streetlight", FAILED_LAMP, "dim", {"level": 0.4}, None),
    ("wastebin", BURNING_BIN, "setInterval", {"interval": 600.0}, None),
    ("evcharger", FAULTED_CHARGER, "setConnector", {"connectorId": 8, "enabled": False},
     "connectorId 8: this station has connectors 1-2"),
    ("airquality", FAULTED_STATION, "setInterval", {"interval": 300.0}, None),
)  # fmt: skip
EXPECTED_FIRING = {
    "cremona-lamp-failure": FAILED_LAMP,
    "cremona-bin-full": BURNING_BIN,
    "cremona-bin-burning": BURNING_BIN,
    "cremona-charger-faulted": FAULTED_CHARGER,
    "cremona-device-offline": GONE_OFFLINE,
    "cremona-air-pm10": POLLUTED_STATION,
    "cremona-air-no2": POLLUTED_STATION,
    "cremona-air-o3": POLLUTED_STATION,
    "cremona-air-station-fault": FAULTED_STATION,
}


@dataclass
class Sent:
    """What the fleet sent, worked out by replaying its schedule (the same seed, same start)."""

    readings: Counter[str] = field(default_factory=Counter)
    collected: Counter[str] = field(default_factory=Counter)
    last_lamp_status: dict[str, str] = field(default_factory=dict)


def replay(start: datetime, until: datetime) -> Sent:
    sent = Sent()
    fleet = build_fleet(SEED, FLEET, FAULT_RATE)
    for due, dev in schedule(fleet, start):
        if due > until:
            break
        reading, events = dev.read(due)
        sent.readings[dev.device_type.name] += 1
        if isinstance(reading, StreetlightReading):
            sent.last_lamp_status[dev.device_id] = reading.status
        for e in events:
            if isinstance(e, BinEmptied):
                sent.collected[e.storedWasteKind] += e.collectedLevel
    return sent


@dataclass
class Filled:
    influx: Influx
    sent: Sent


def _publish_known_states(url: str, city: str, now: datetime) -> int:
    """Messages putting a few devices in a known state; returns how many dead-letters."""
    pub = AckingPublisher(url, f"known-{city}")
    pub.connect()

    def send(dtype: str, dev: str, channel: str, payload: bytes) -> None:
        pub.publish(topic(dtype, dev, channel, city), payload)  # type: ignore[arg-type]

    lamp = [
        StreetlightReading(
            ts=now - timedelta(seconds=s), seq=i, powerState="on", illuminanceLevel=1.0,
            activePower=0.0, totalActiveEnergyImport=100.0, voltage=230.0, current=0.0,
            ratedPower=70.0, status="defectiveLamp",
        )
        for i, s in enumerate((120, 60, 5))
    ]  # fmt: skip
    send("streetlight", FAILED_LAMP, "telemetry", encode_telemetry(lamp, ZONE))
    # its failure as the lamp reports it: the simulated fleet's own failures depend on the seed
    # and on the hour the test runs, and some runs have none in the range
    failure = LampStatusChanged(ts=now - timedelta(seconds=120), kind="statusChanged",
                                status="defectiveLamp")  # fmt: skip
    send("streetlight", FAILED_LAMP, "events", encode_events([failure], ZONE))
    bin_readings = [
        WastebinReading(
            ts=now - timedelta(seconds=s), seq=i, fillingLevel=0.97, temperature=85.0,
            storedWasteKind="plastic", status="burning", batteryLevel=0.1,
        )
        for i, s in enumerate((600, 300, 5))
    ]  # fmt: skip
    send("wastebin", BURNING_BIN, "telemetry", encode_telemetry(bin_readings, ZONE))
    charger = EvchargerReading(
        ts=now - timedelta(seconds=5), seq=0, power=0.0, energy=1000.0,
        connectors=[
            Connector(connectorId=1, status="Faulted", power=0.0, energy=600.0),
            Connector(connectorId=2, status="Unavailable", power=0.0, energy=400.0),
        ],
    )  # fmt: skip
    send("evcharger", FAULTED_CHARGER, "telemetry", encode_telemetry([charger], ZONE))
    for dev, level, status in (
        (POLLUTED_STATION, 3.0, "ok"),
        (FAULTED_STATION, 0.5, "sensorFault"),
    ):
        air = [
            AirqualityReading(
                ts=now - timedelta(seconds=s), seq=i, pm10=100 * level, pm25=60 * level,
                no2=120 * level, o3=85 * level, co=1.0 * level, temperature=4.0,
                relativeHumidity=0.9, status=status,  # type: ignore[arg-type]
            )
            for i, s in enumerate((600, 300, 5))
        ]  # fmt: skip
        send("airquality", dev, "telemetry", encode_telemetry(air, ZONE))
    where = Location(lat=45.1255, lon=9.9975)
    for dtype, dev in (
        ("streetlight", FAILED_LAMP), ("wastebin", BURNING_BIN), ("evcharger", FAULTED_CHARGER),
        ("airquality", POLLUTED_STATION), ("airquality", FAULTED_STATION),
    ):  # fmt: skip
        online = Status(v=1, state="online", ts=now - timedelta(hours=1), zone=ZONE, location=where)
        send(dtype, dev, "status", encode(online))
    for state, ago in (("online", 3600), ("offline", 20)):
        status = Status(
            v=1, state=state, ts=now - timedelta(seconds=ago), zone=ZONE, location=where
        )
        send("streetlight", GONE_OFFLINE, "status", encode(status))
    for i, dropped in enumerate((0, 2, 4)):
        beat = Health(
            v=1, ts=now - timedelta(seconds=120 - 40 * i), zone=ZONE, version="0.1.0",
            uptime=1000.0 + 40 * i, outboxDepth=5, dropped=dropped, lastError="modbus timeout",
        )  # fmt: skip
        send("streetlight", EDGE_AGENT, "health", encode(beat))
    send("wastebin", BURNING_BIN, "telemetry", b'{"v": 1, "readings": "not a list"}')
    for dtype, dev, _, _, reason in COMMANDS:
        status = "accepted" if reason is None else "rejected"
        result = CommandResult(v=1, ts=now, id=f"op-{dev}", status=status, reason=reason)
        send(dtype, dev, "cmd_result", encode(result))
    assert pub.drain(30)
    pub.close()
    return 1


def write(influx: Influx, lines: list[str]) -> None:
    create = urllib.parse.urlencode({"q": f'CREATE DATABASE "{influx.db}"'}).encode()
    urllib.request.urlopen(f"{influx.url}/query", create, timeout=30).close()
    url = f"{influx.url}/write?" + urllib.parse.urlencode({"db": influx.db})
    urllib.request.urlopen(url, "\n".join(lines).encode(), timeout=30).close()


def reporting_ingester(env: dict[str, str], folder: Path, city: str) -> IngesterProcess:
    """The real ingester, writing its health figures (and the broker's) every STATS_INTERVAL."""
    return IngesterProcess(
        env, folder / "ingest.log",
        "--client-id", f"ingest-{city}", "--share-group", f"g{city}", "--spool-dir",
        str(folder / "spool"), "--metrics-port", "0", "--stats-interval", str(STATS_INTERVAL),
    )  # fmt: skip


def wait_for_health_figures(influx: Influx, intervals: int, timeout: float = 60) -> str | None:
    """Wait until ``ingest_stats`` and ``broker_stats`` each have points in ``intervals``
    of the pipeline board's 10 s intervals; None, or what is still missing."""
    deadline = time.monotonic() + timeout
    while True:
        filled = {
            m: sum(row["count"] > 0 for row in influx.query(  # type: ignore[operator]
                f'SELECT count("{field}") FROM "{m}" WHERE time > now() - 15m '
                "GROUP BY time(10s) fill(0)"
            ))
            for m, field in (("ingest_stats", "messages_received"), ("broker_stats", "dropped"))
        }  # fmt: skip
        if min(filled.values()) >= intervals:
            return None
        if time.monotonic() > deadline:
            return f"10 s intervals with figures after {timeout:.0f} s: {filled}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def young_mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A broker started for this module. Mosquitto 2.0 publishes ``$SYS`` values retained with
    a 60 s expiry, and again only when they change: on the session's broker, older than that
    and with no drops, a new ingester never learns the drop count the pipeline board shows
    (docs/operations.md)."""
    workdir = tmp_path_factory.mktemp("young-mosquitto")
    yield from running(Mosquitto(workdir=workdir, host="127.0.0.1", port=free_port()))


@pytest.fixture(scope="module")
def filled(
    young_mosquitto: Mosquitto, influxd, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Filled]:
    mosquitto = young_mosquitto
    city = f"t{uuid.uuid4().hex[:10]}"
    influx = Influx(influxd.url, f"db_{city}")
    env = smartcity_env(mosquitto.url, influx, city)
    ingester = reporting_ingester(env, tmp_path_factory.mktemp("grafana"), city)
    ingester.start().wait_subscribed()
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - HISTORY
    sent = replay(start, now - timedelta(seconds=60))
    result = run_smartcity(
        "simulate", "--fleet", ",".join(f"{t}={n}" for t, n in FLEET.items()), "--seed", str(SEED),
        "--fault-rate", str(FAULT_RATE), "--start", start.isoformat(), "--speed", "0",
        "--batch", "60", "--messages", str(sum(sent.readings.values())), "--no-progress",
        env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answered = datetime.now(UTC)
    dead = _publish_known_states(mosquitto.url, city, answered)
    sent_ns = int((answered - timedelta(seconds=5)).timestamp()) * 10**9  # sent, then answered
    write(influx, [
        commands.sent_line(dtype, dev, ZONE, commands.build(dtype, name, args, f"op-{dev}"),
                           "key:0123456789ab", sent_ns)
        for dtype, dev, name, args, _ in COMMANDS
    ])  # fmt: skip
    try:
        for measurement, count in sent.readings.items():
            extra = KNOWN_READINGS[measurement]
            assert influx.wait_for_count(measurement, count + extra) == count + extra
        assert influx.wait_for_count("deadletter", dead, field="reason") == dead
        assert influx.wait_for_count("device_health", 3, field="uptime") == 3
        commanded = 2 * len(COMMANDS)  # a sent point and an answer each
        assert influx.wait_for_count("device_command", commanded, field="command_id") == commanded
        # the pipeline board's rates are differences between intervals: wait for two of them
        missing = wait_for_health_figures(influx, intervals=2)
        assert missing is None, f"{missing}\n{ingester.log()}"
        # the rollups the long-window KPI panels read, of what is stored (as on a deployment)
        init = run_smartcity("storage", "init", env=env)
        assert init.returncode == 0, init.stderr
        yield Filled(influx, sent)
    finally:
        ingester.stop()


def run(influx: Influx, query: str) -> list[grafana.Series]:
    body = urllib.parse.urlencode({"db": influx.db, "q": query, "epoch": "ms"}).encode()
    with urllib.request.urlopen(f"{influx.url}/query", body, timeout=30) as resp:
        result = json.load(resp)["results"][0]
    assert "error" not in result, f"InfluxDB refused: {result['error']}\n{query}"
    return grafana.series(result)


def boards() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(GRAFANA.glob("dashboards/*/*.json"))}


def datasource_min_interval() -> str:
    data = yaml.safe_load((GRAFANA / "provisioning/datasources/smartcity.yaml").read_text())
    return str(data["datasources"][0]["jsonData"]["timeInterval"])


def query_panels() -> list[tuple[str, dict[str, Any]]]:
    return [(uid, p) for uid, b in boards().items() for p in b["panels"] if p.get("targets")]


ALL_VARIABLES = {"zone": ".*", "device_type": ".*", "catalogue": "http://localhost:8000"}


def panel_results(
    influx: Influx,
    panel: dict[str, Any],
    variables: dict[str, str],
    time_range: grafana.Range = RANGE,
) -> dict[str, list[grafana.Series]]:
    """Each target's result by refId, math expressions evaluated over the others."""
    results: dict[str, list[grafana.Series]] = {}
    now_ms = time.time_ns() // 1_000_000
    if panel.get("timeFrom"):  # the panel's own range (a KPI's window) replaces the board's
        time_range = grafana.relative_range(panel["timeFrom"], now_ms, TIMEZONE)
    for t in panel["targets"]:
        if t["datasource"]["type"] == "influxdb":
            q = grafana.interpolate(
                t["query"],
                time_range,
                variables,
                panel.get("interval"),
                datasource_min_interval(),
                now_ms,
            )
            results[t["refId"]] = run(influx, q)
    for t in panel["targets"]:
        if t["datasource"]["type"] == "__expr__":
            assert t["type"] == "math", t
            results[t["refId"]] = grafana.math_ratio(t["expression"], results)
    return results


def alert_rules() -> list[dict[str, Any]]:
    data = yaml.safe_load((GRAFANA / "provisioning/alerting/smartcity.yaml").read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def evaluate(influx: Influx, rule: dict[str, Any]) -> grafana.Evaluation:
    results = {}
    now_ms = time.time_ns() // 1_000_000
    for step in rule["data"]:
        if step["datasourceUid"] != "__expr__":
            window = grafana.Range(step["relativeTimeRange"]["from"])
            results[step["refId"]] = run(
                influx, grafana.interpolate(step["model"]["query"], window, {}, now_ms=now_ms)
            )
    return grafana.evaluate_rule(rule, results)


@pytest.mark.servers
@pytest.mark.parametrize("rule", alert_rules(), ids=[r["uid"] for r in alert_rules()])
def test_alert_rule_fires_for_the_device_sent_in_fault(
    filled: Filled, rule: dict[str, Any]
) -> None:
    outcome = evaluate(filled.influx, rule)
    assert not outcome.no_data, f"{rule['uid']}: its query returned no data"
    firing = {labels.get("device_id") for labels in outcome.firing}
    if rule["uid"] in EXPECTED_FIRING:
        assert EXPECTED_FIRING[rule["uid"]] in firing
        if rule["uid"] == "cremona-lamp-failure":
            failed = {d for d, s in filled.sent.last_lamp_status.items() if s != "ok"}
            assert firing <= failed | {FAILED_LAMP}
    else:  # ingest stalled: the figures written show messages flowing
        assert rule["uid"] == "cremona-ingest-stalled"
        assert not outcome.firing


@pytest.mark.servers
def test_ingest_stalled_fires_when_the_counter_stops_or_figures_vanish(
    mosquitto, influxd, tmp_path: Path
) -> None:
    rule = next(r for r in alert_rules() if r["uid"] == "cremona-ingest-stalled")
    city = f"t{uuid.uuid4().hex[:10]}"
    stopped = Influx(influxd.url, f"db_stalled_{city}")
    write(stopped, [line("unrelated", {}, {"x": 1}, time.time_ns())])
    outcome = evaluate(stopped, rule)
    assert outcome.no_data
    assert rule["noDataState"] == "Alerting"
    # a real ingester that receives nothing: its figures keep coming, its counter stands still
    ingester = reporting_ingester(smartcity_env(mosquitto.url, stopped, city), tmp_path, city)
    ingester.start().wait_subscribed()
    try:
        assert stopped.wait_for_count("ingest_stats", 3, field="messages_received") >= 3
        outcome = evaluate(stopped, rule)
    finally:
        assert ingester.stop() == 0
    assert outcome.firing
    assert not outcome.no_data


@pytest.mark.servers
def test_the_pipeline_board_reads_the_fields_the_ingester_writes(filled: Filled) -> None:
    written = {
        m: {row["fieldKey"] for row in filled.influx.query(f'SHOW FIELD KEYS FROM "{m}"')}
        for m in ("ingest_stats", "broker_stats")
    }
    assert set(storage.INGEST_STATS_FIELDS) == written["ingest_stats"]
    assert set(storage.BROKER_STATS_FIELDS) == written["broker_stats"]
    read = {
        name
        for p in boards()[pipeline.UID]["panels"]
        for t in p.get("targets", [])
        if '"ingest_stats"' in t.get("query", "") or '"broker_stats"' in t.get("query", "")
        for name in re.findall(r'\("(\w+)"\)', t["query"])
        if name != "v"
    }
    assert read
    assert read <= written["ingest_stats"] | written["broker_stats"]


@pytest.mark.servers
@pytest.mark.parametrize(
    ("board", "panel"), query_panels(), ids=[f"{u}:{p['title']}" for u, p in query_panels()]
)
def test_every_panel_query_returns_data(filled: Filled, board: str, panel: dict[str, Any]) -> None:
    time_range = PIPELINE_RANGE if board == pipeline.UID else RANGE
    results = panel_results(filled.influx, panel, ALL_VARIABLES, time_range)
    shown = [t["refId"] for t in panel["targets"] if not t.get("hide")]
    for ref, found in results.items():
        assert any(s.has_data() for s in found), f"{board}: {panel['title']} {ref} has no data"
    assert any(s.numbers() or s.has_data() for ref in shown for s in results[ref])


def value_of(filled: Filled, board: str, title: str) -> float:
    panel = next(p for p in boards()[board]["panels"] if p["title"] == title)
    results = panel_results(filled.influx, panel, ALL_VARIABLES)
    shown = next(t["refId"] for t in panel["targets"] if not t.get("hide"))
    (found,) = results[shown]
    return found.numbers()[-1]


@pytest.mark.servers
@pytest.mark.parametrize("board", sorted(p.board_uid for p in PANELS.values()))
def test_each_device_board_lists_its_commands_and_their_answers(filled: Filled, board: str) -> None:
    panel = next(p for p in boards()[board]["panels"] if p["title"] == "Comandi recenti")
    (found,) = panel_results(filled.influx, panel, ALL_VARIABLES)["A"]
    rows = [dict(zip(found.columns, row, strict=True)) for row in found.values]
    (_, dev, name, args, reason) = next(c for c in COMMANDS if board_of(c[0]) == board)
    assert [r["state"] for r in rows] == ["applied" if reason is None else "rejected", "sent"]
    answer, sent = rows
    assert answer["device_id"] == sent["device_id"] == dev
    assert answer["command_id"] == sent["command_id"] == f"op-{dev}"
    assert answer["reason"] == reason
    assert sent["name"] == name
    assert json.loads(sent["args"]) == args
    assert sent["actor"] == "key:0123456789ab"


def board_of(device_type: str) -> str:
    return PANELS[device_type].board_uid


@pytest.mark.servers
def test_headline_numbers_match_what_was_sent(filled: Filled) -> None:
    sent = filled.sent
    share = 100 * (1 - sent.collected["residual"] / sum(sent.collected.values()))
    assert value_of(
        filled, "cremona-rifiuti", "Raccolta differenziata (30 giorni)"
    ) == pytest.approx(share)
    failed = sum(s != "ok" for s in sent.last_lamp_status.values()) + 1  # + FAILED_LAMP
    assert value_of(filled, "cremona-illuminazione", "Lampioni guasti") == failed


@pytest.mark.servers
def test_variables_list_the_zones_and_filter_by_them(filled: Filled) -> None:
    for uid, board in boards().items():
        zone_var = next(v for v in board["templating"]["list"] if v["name"] == "zone")
        types = next(v for v in board["templating"]["list"] if v["name"] == "device_type")
        assert set(types["query"].split(",")) <= set(DEVICE_TYPES)
        q = grafana.interpolate(zone_var["query"], RANGE, {"device_type": ".*"})
        zones = {row[1] for s in run(filled.influx, q) for row in s.values}
        assert ZONE in zones, uid
    # a multi-value selection, with a zone name that needs escaping, narrows every query
    only = {
        **ALL_VARIABLES,
        "zone": grafana.regex_value([ZONE, "Borgo Loreto"], ".*"),
        "device_type": grafana.regex_value(list(DEVICE_TYPES), ".*"),
    }
    alarms = boards()["cremona-allarmi"]
    seen = set()
    for panel in alarms["panels"]:
        if panel.get("targets") and panel["type"] == "table":
            for found in panel_results(filled.influx, panel, only).values():
                for s in found:
                    assert s.tags.get("zone", ZONE) in {ZONE, "Borgo Loreto"}
                    seen.add(s.tags.get("device_id"))
    assert {FAILED_LAMP, BURNING_BIN, FAULTED_CHARGER, GONE_OFFLINE, FAULTED_STATION} <= seen


@pytest.mark.servers
def test_the_city_map_colours_every_device_by_its_condition(filled: Filled) -> None:
    board = boards()[overview.UID]
    (panel,) = (p for p in board["panels"] if p["type"] == "geomap")
    rows = grafana.transform(
        panel_results(filled.influx, panel, ALL_VARIABLES), panel["transformations"]
    )
    layer = panel["options"]["layers"][0]
    lat, lon = layer["location"]["latitude"], layer["location"]["longitude"]
    colour = layer["config"]["style"]["color"]["field"]
    by_device = {row["device_id"]: row for row in rows}
    assert len(by_device) == len(rows) == sum(FLEET.values()) + 6  # + the known-state devices
    assert all(isinstance(row[lat], float) and isinstance(row[lon], float) for row in rows)
    # every condition shown has a name and a colour on the map
    (mapping,) = panel["fieldConfig"]["defaults"]["mappings"]
    assert {str(row[colour]) for row in rows} <= set(mapping["options"])
    for dev in (FAILED_LAMP, BURNING_BIN, FAULTED_CHARGER, FAULTED_STATION):
        assert by_device[dev][colour] == overview.CONDITION_FAULT, dev
    assert by_device[POLLUTED_STATION][colour] == overview.CONDITION_OK  # polluted air, no fault
    assert by_device[GONE_OFFLINE][colour] == overview.CONDITION_OFFLINE
    for dev, status in filled.sent.last_lamp_status.items():
        expected = overview.CONDITION_OK if status == "ok" else overview.CONDITION_FAULT
        assert by_device[dev][colour] == expected, (dev, status)
    conditions = Counter(row[colour] for row in rows)
    assert conditions[overview.CONDITION_OK] > 0
    # the zone variable narrows the map too
    only = {**ALL_VARIABLES, "zone": grafana.regex_value([ZONE], ".*")}
    narrowed = grafana.transform(
        panel_results(filled.influx, panel, only), panel["transformations"]
    )
    assert {row["zone"] for row in narrowed} == {ZONE}
    assert FAILED_LAMP in {row["device_id"] for row in narrowed}


@pytest.mark.servers
def test_the_air_quality_map_colours_each_station_by_its_index_band(filled: Filled) -> None:
    from grafana.panels.airquality import BAND_TEXTS

    board = boards()[PANELS["airquality"].board_uid]
    (panel,) = (p for p in board["panels"] if p["type"] == "geomap")
    rows = grafana.transform(
        panel_results(filled.influx, panel, ALL_VARIABLES), panel["transformations"]
    )
    by_station = {row["device_id"]: row for row in rows}
    assert len(by_station) == FLEET["airquality"] + 2
    assert all(isinstance(row["lat"], float) for row in rows)
    # 300 µg/m³ of PM10 is extremely poor; 30 of PM2.5 and 50 of PM10 moderate
    assert by_station[POLLUTED_STATION]["band"] == 6
    assert by_station[FAULTED_STATION]["band"] == 3
    assert {row["band"] for row in rows} <= set(BAND_TEXTS)
