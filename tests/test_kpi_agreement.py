"""Every declared KPI: the API's value equals the value of its Grafana panel's InfluxQL.

One InfluxDB is filled through MQTT and the real ingester with a simulated night of every device
type (the same fleet code ``smartcity simulate`` runs, seeded; fault rates raised so failures,
fires and faulted connectors happen). Then, with the clock of both set to the end of the data
(the API's ``--as-of``, Grafana's "now" in the emulation), the API computes its KPIs and each
KPI panel of the committed boards is run the way Grafana runs it: its own relative time,
``$timeFilter`` and the board variables substituted (``tests/grafana_emulation.py``), math
expressions evaluated, value mappings applied. The test is parametrised over the declarations
(``<Type>.kpis``), so a new type's KPIs are checked with no edit here; each must come out
non-trivial (not zero, not null) from the data, or the test says so.
"""

from __future__ import annotations

import json
import signal
import urllib.parse
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from api.app import create_app
from api.kpis.base import api_statements
from api.settings import ApiSettings
from grafana.panels import PANELS
from simulators.fleet import build_fleet, schedule
from simulators.publisher import AckingPublisher
from smartcity import retention
from smartcity.city import TIMEZONE
from smartcity.contract import MAX_BATCH, encode_events, encode_telemetry, topic
from smartcity.devices import DEVICE_TYPES, Event, Reading
from smartcity.influx import at
from smartcity.kpis import Band, Kpi, combine
from stack.servers import Influxd, Mosquitto

from . import grafana_emulation as grafana
from .conftest import Influx, IngesterProcess, run_smartcity, smartcity_env

GRAFANA = Path(__file__).parents[1] / "grafana"
#: A January evening and night, 16:00 to 01:00 local time: lamps lit from dusk and dimmed
#: after 23:00, bins filling after the morning round, chargers in use; high fault rates make
#: failures, fires and faulted connectors. Seed and counts give every KPI a non-zero value.
START = datetime(2026, 1, 14, 4, 0, tzinfo=UTC)
AS_OF = datetime(2026, 1, 15, 0, 0, 30, tzinfo=UTC)
SEED = 27
FAULT_RATE = 150.0
#: Devices per type; a type not listed gets DEFAULT_COUNT.
COUNTS = {"streetlight": 8, "wastebin": 16, "evcharger": 4}
DEFAULT_COUNT = 6
KPIS = [(t.name, k) for t in DEVICE_TYPES.values() for k in t.kpis]


@dataclass(frozen=True)
class Filled:
    influx: Influx
    #: device type -> KPI id -> the API's value
    api: dict[str, dict[str, float | None]]


def simulated_night() -> dict[tuple[str, str, str], tuple[list[Reading], list[Event]]]:
    """(device type, device id, zone) -> its readings and events, from START to AS_OF."""
    counts = {t: COUNTS.get(t, DEFAULT_COUNT) for t in DEVICE_TYPES}
    fleet = build_fleet(SEED, counts, FAULT_RATE)
    out: dict[tuple[str, str, str], tuple[list[Reading], list[Event]]] = defaultdict(
        lambda: ([], [])
    )
    for due, dev in schedule(fleet, START):
        if due >= AS_OF:
            break
        reading, events = dev.read(due)
        readings, happened = out[(dev.device_type.name, dev.device_id, dev.placement.zone)]
        readings.append(reading)
        happened.extend(events)
    return out


def publish(url: str, city: str) -> dict[str, int]:
    """Every device's readings and events, in batches; returns readings per measurement."""
    pub = AckingPublisher(url, f"kpi-{city}")
    pub.connect()
    sent: dict[str, int] = defaultdict(int)
    for (dtype, device_id, zone), (readings, events) in simulated_night().items():
        for i in range(0, len(readings), MAX_BATCH):
            batch = readings[i : i + MAX_BATCH]
            pub.publish(topic(dtype, device_id, "telemetry", city), encode_telemetry(batch, zone))  # type: ignore[arg-type]
        for i in range(0, len(events), MAX_BATCH):
            batch_e = events[i : i + MAX_BATCH]
            pub.publish(topic(dtype, device_id, "events", city), encode_events(batch_e, zone))  # type: ignore[arg-type]
        sent[DEVICE_TYPES[dtype].measurement()] += len(readings)
    assert pub.drain(60)
    pub.close()
    return sent


async def api_values(influx: Influx, registry: Path) -> dict[str, dict[str, float | None]]:
    settings = ApiSettings(
        influx_url=influx.url, influx_db=influx.db, registry_url=f"sqlite:///{registry}",
        as_of=AS_OF, kpi_cache_seconds=0,
    )  # fmt: skip
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            body = (await client.get("/v1/services")).json()
    out: dict[str, dict[str, float | None]] = defaultdict(dict)
    for service in body["data"]:
        for dtype in service["device_types"]:
            declared = {k.id for k in DEVICE_TYPES[dtype].kpis}
            for k in service["kpis"]:
                if k["id"] in declared:
                    out[dtype][k["id"]] = k["value"]
    return out


@pytest.fixture(scope="module")
def filled(
    mosquitto: Mosquitto, influxd: Influxd, tmp_path_factory: pytest.TempPathFactory
) -> Filled:
    import asyncio

    city = "kpiagree"
    influx = Influx(influxd.url, f"db_{city}")
    folder = tmp_path_factory.mktemp("kpi-agreement")
    ingester = IngesterProcess(
        smartcity_env(mosquitto.url, influx, city), folder / "ingest.log",
        "--client-id", f"ingest-{city}", "--share-group", f"g{city}",
        "--spool-dir", str(folder / "spool"), "--metrics-port", "0",
    ).start().wait_subscribed()  # fmt: skip
    try:
        for measurement, count in publish(mosquitto.url, city).items():
            assert influx.wait_for_count(measurement, count) == count, ingester.log()
    finally:
        ingester.stop(signal.SIGTERM)
    # the rollups of what is stored, as on a deployment (long windows read them)
    init = run_smartcity("storage", "init", env=smartcity_env(mosquitto.url, influx, city))
    assert init.returncode == 0, init.stderr
    return Filled(influx, asyncio.run(api_values(influx, folder / "registry.db")))


def board_panel(dtype: str, kpi: Kpi) -> dict[str, Any]:
    """The KPI's panel on its type's committed board (the file Grafana is provisioned with)."""
    uid = PANELS[dtype].board_uid
    (path,) = GRAFANA.glob(f"dashboards/*/{uid}.json")
    panels = [p for p in json.loads(path.read_text())["panels"] if p["title"] == kpi.title_it]
    assert len(panels) == 1, f"{uid}: {len(panels)} panels titled {kpi.title_it!r}"
    return panels[0]


def datasource_min_interval() -> str:
    data = yaml.safe_load((GRAFANA / "provisioning/datasources/smartcity.yaml").read_text())
    return str(data["datasources"][0]["jsonData"]["timeInterval"])


def run(influx: Influx, query: str) -> list[grafana.Series]:
    body = urllib.parse.urlencode({"db": influx.db, "q": query, "epoch": "ms"}).encode()
    with urllib.request.urlopen(f"{influx.url}/query", body, timeout=30) as resp:
        result = json.load(resp)["results"][0]
    assert "error" not in result, f"InfluxDB refused: {result['error']}\n{query}"
    return grafana.series(result)


def grafana_value(influx: Influx, panel: dict[str, Any]) -> float | str | None:
    """What the stat panel shows at AS_OF: its last non-null number, or the text its value
    mappings give that number."""
    now_ms = int(AS_OF.timestamp() * 1000)
    window = grafana.relative_range(panel["timeFrom"], now_ms, TIMEZONE)
    variables = {"zone": ".*", "device_type": ".*"}
    results: dict[str, list[grafana.Series]] = {}
    for t in panel["targets"]:
        if t["datasource"]["type"] == "influxdb":
            q = grafana.interpolate(
                t["query"], window, variables, panel.get("interval"),
                datasource_min_interval(), now_ms,
            )  # fmt: skip
            results[t["refId"]] = run(influx, q)
    for t in panel["targets"]:
        if t["datasource"]["type"] == "__expr__":
            results[t["refId"]] = grafana.math_ratio(t["expression"], results)
    (shown,) = [t["refId"] for t in panel["targets"] if not t.get("hide")]
    numbers = [n for s in results[shown] for n in s.numbers()]
    if not numbers:
        return None
    return grafana.mapped(numbers[-1], panel["fieldConfig"]["defaults"].get("mappings", []))


@pytest.mark.servers
@pytest.mark.parametrize(("dtype", "kpi"), KPIS, ids=[f"{t}:{k.id}" for t, k in KPIS])
def test_the_api_and_the_board_give_the_same_value(filled: Filled, dtype: str, kpi: Kpi) -> None:
    api = filled.api[dtype].get(kpi.id, "missing")
    assert api != "missing", f"GET /v1/services has no KPI {kpi.id} for {dtype}"
    assert api not in (None, 0), f"{kpi.id}: the test data give it no value; add readings"
    shown = grafana_value(filled.influx, board_panel(dtype, kpi))
    assert isinstance(api, int | float)
    if isinstance(kpi.measure, Band):  # the board names the band the API numbers
        assert shown == kpi.measure.labels[int(api) - 1], (kpi.id, api, shown)
        return
    assert isinstance(shown, float), f"{kpi.id}: the board shows {shown!r}, the API {api}"
    # the API rounds to the declared digits, the board shows as many
    tolerance = 0.5 * 10**-kpi.decimals if kpi.decimals is not None else 1e-9
    assert shown == pytest.approx(api, abs=tolerance * 1.001, rel=1e-9), kpi.id


ROLLED = [(t, k) for t, k in KPIS if retention.kpi_rollup(k) is not None]


@pytest.mark.servers
@pytest.mark.parametrize(("dtype", "kpi"), ROLLED, ids=[f"{t}:{k.id}" for t, k in ROLLED])
def test_a_kpi_from_rollups_equals_the_same_from_raw_readings(
    filled: Filled, dtype: str, kpi: Kpi
) -> None:
    """On data present at both resolutions, the rollup statements the API and the board run
    give the raw statements' number."""
    bounds = {"from": at(kpi.window.start(AS_OF)), "to": at(AS_OF)}

    def value(raw: bool) -> float | None:
        results = []
        for q in api_statements(kpi, raw=raw):
            rows = filled.influx.query(q, **bounds)
            results.append(float(rows[0]["value"]) if rows else None)  # type: ignore[arg-type]
        return combine(kpi, results)

    rolled, raw = value(raw=False), value(raw=True)
    assert raw not in (None, 0), f"{kpi.id}: the test data give it no value; add readings"
    assert rolled == pytest.approx(raw, rel=1e-9), kpi.id
    assert "hourly" in " ".join(api_statements(kpi))


def test_every_kpi_has_one_panel_per_board_and_headline_ones_on_the_overview() -> None:
    overview = json.loads(next(GRAFANA.glob("dashboards/*/cremona-panoramica.json")).read_text())
    titles = [p["title"] for p in overview["panels"]]
    for dtype, kpi in KPIS:
        panel = board_panel(dtype, kpi)
        assert panel["timeFrom"] == kpi.window.relative()
        assert titles.count(kpi.title_it) == int(kpi.headline), kpi.id
