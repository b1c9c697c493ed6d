"""The KPI format's measures that no type declares yet (air quality's: exceedance days and
hours, annual means, bands, this year), run on the real InfluxDB against plain Python.

The declared KPIs are checked end to end by ``tests/test_kpi_agreement.py``; this checks that the
generator writes the right InfluxQL for the other measures before a type relies on them.
"""

from __future__ import annotations

import json
import random
import urllib.parse
import urllib.request
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from statistics import mean
from zoneinfo import ZoneInfo

import pytest

from grafana.panels.base import kpi_panel
from grafana.sdk import to_json
from smartcity.city import TIMEZONE
from smartcity.kpis import (
    Band,
    DeviceMean,
    Exceedances,
    Kpi,
    Latest,
    ThisYear,
    Where,
    combine,
    literal,
    statements,
)
from stack.servers import Influxd

from . import grafana_emulation as grafana

M = "probe"
END = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
LOCAL = ZoneInfo(TIMEZONE)
EXCEED_DAYS = Kpi("d", "d", "d", "days", Exceedances(M, "pm10", "1d", 50.0), ThisYear())
EXCEED_HOURS = Kpi("h", "h", "h", "hours", Exceedances(M, "pm10", "1h", 50.0), ThisYear())
ANNUAL = Kpi("a", "a", "a", "µg/m³", DeviceMean(M, "pm10"), ThisYear())
BANDS = Band(M, "pm10", (20.0, 40.0, 50.0), ("good", "fair", "poor", "bad"))
BAND_NOW = Kpi("b", "b", "b", "band", BANDS)

#: device -> [(time, pm10)]: ten days of half-hourly values, one station dirtier than the other,
#: and points just either side of local midnight so days are local days.
Points = dict[str, list[tuple[datetime, float]]]


def points() -> Points:
    rng = random.Random(7)
    out: Points = defaultdict(list)
    t = END - timedelta(days=10)
    while t < END:
        for device, base in (("s1", 35.0), ("s2", 48.0)):
            out[device].append((t, round(base + rng.uniform(-20, 20), 2)))
        t += timedelta(minutes=30)
    # s3: clean air but for an hour around local midnight: over the limit on that local day,
    # not on either UTC day (local days, not UTC ones, count)
    midnight = datetime.combine((END - timedelta(days=5)).date(), datetime.min.time(), LOCAL)
    dirty = {midnight + timedelta(minutes=m) for m in (0, 30, 60, 90)}
    t = END - timedelta(days=10)
    while t < END:
        out["s3"].append((t, 700.0 if t in dirty else 10.0))
        t += timedelta(minutes=30)
    out["s1"].append((END - timedelta(minutes=3), 49.99))
    out["s2"].append((END - timedelta(minutes=5), 40.0))
    return out


@pytest.fixture(scope="module")
def probe(influxd: Influxd) -> tuple[str, Points]:
    db = "db_kpi_probe"
    data = points()
    lines = [
        f"{M},device_id={d} pm10={v} {int(t.timestamp()) * 10**9}"
        for d, values in data.items()
        for t, v in values
    ]
    for q, body in ((f'CREATE DATABASE "{db}"', None), (None, "\n".join(lines))):
        if q:
            urllib.request.urlopen(
                f"{influxd.url}/query", urllib.parse.urlencode({"q": q}).encode()
            ).close()
        else:
            url = f"{influxd.url}/write?" + urllib.parse.urlencode({"db": db})
            urllib.request.urlopen(url, str(body).encode()).close()
    return f"{influxd.url}/query?" + urllib.parse.urlencode({"db": db}), data


def value(url: str, kpi: Kpi, start: datetime, device: str | None = None) -> float | None:
    time = f"time > {literal(start.isoformat())} AND time <= {literal(END.isoformat())}"
    only = [f'"device_id" = {literal(device)}'] if device else []
    results: list[float | None] = []
    for q in statements(kpi, time, only):
        with urllib.request.urlopen(url, urllib.parse.urlencode({"q": q}).encode()) as resp:
            result = json.load(resp)["results"][0]
        assert "error" not in result, f"{result['error']}\n{q}"
        series = result.get("series", [])
        results.append(series[0]["values"][0][1] if series else None)
    return combine(kpi, results)


def in_window(data: Points, start: datetime) -> Points:
    return {d: [(t, v) for t, v in vs if start < t <= END] for d, vs in data.items()}


def exceedances(data: Points, period: str, limit: float, zone: ZoneInfo = LOCAL) -> float:
    worst = 0
    for values in data.values():
        groups: dict[object, list[float]] = defaultdict(list)
        for t, v in values:
            local = t.astimezone(zone)
            groups[local.date() if period == "1d" else (local.date(), local.hour)].append(v)
        worst = max(worst, sum(mean(g) > limit for g in groups.values()))
    return float(worst)


@pytest.mark.servers
def test_this_years_exceedances_means_and_bands_are_what_python_says(
    probe: tuple[str, Points],
) -> None:
    url, data = probe
    start = ThisYear().start(END)
    assert start == datetime(2026, 1, 1, tzinfo=LOCAL)
    year = in_window(data, start)
    days = exceedances(year, "1d", 50.0)
    hours = exceedances(year, "1h", 50.0)
    assert 0 < days < 10
    assert hours > days
    assert value(url, EXCEED_DAYS, start) == days
    s3 = {"s3": year["s3"]}
    assert exceedances(s3, "1d", 50.0, ZoneInfo("UTC")) == 0
    assert value(url, EXCEED_DAYS, start, "s3") == exceedances(s3, "1d", 50.0) == 1
    assert value(url, EXCEED_HOURS, start) == hours
    annual = max(mean(v for _, v in vs) for vs in year.values())
    assert value(url, ANNUAL, start) == pytest.approx(annual)
    # the worst station's band now: s1 at 49.99 (band 3; s2 at 40.0)
    fresh = BAND_NOW.window.start(END)
    assert value(url, BAND_NOW, fresh) == 3.0
    assert BANDS.band(40.0) == 3
    assert BANDS.band(39.99) == 2


def test_a_band_panel_names_the_band_the_api_numbers_even_on_an_edge() -> None:
    panel = to_json(kpi_panel(BAND_NOW).builder.build())
    mappings = panel["fieldConfig"]["defaults"]["mappings"]
    assert panel["timeFrom"] == "15m"
    for raw in (0.0, 19.99, 20.0, 39.99, 40.0, 50.0, 400.0):
        assert grafana.mapped(raw, mappings) == BANDS.labels[BANDS.band(raw) - 1], raw


def test_a_declaration_that_mixes_now_and_windows_is_refused() -> None:
    with pytest.raises(ValueError, match="use Now"):
        Kpi("x", "x", "x", "count", Latest(M, "pm10", where=Where("pm10", ">", 1)), ThisYear())
    with pytest.raises(ValueError, match="use Now"):
        Kpi("x", "x", "x", "days", Exceedances(M, "pm10", "1d", 50.0))
    with pytest.raises(ValueError, match="one label more"):
        Kpi("x", "x", "x", "band", Band(M, "pm10", (1.0,), ("a",)))
