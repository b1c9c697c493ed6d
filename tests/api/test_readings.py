"""A device's latest reading and time series, against what the device sent."""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from . import city as c


def first_of(sent: c.Sent, kind: str) -> str:
    return min(d for d in sent.readings if sent.kind[d] == kind and d.count("-") == 1)


@pytest.mark.parametrize("kind", ["streetlight", "wastebin", "evcharger"])
async def test_latest_is_the_last_reading_sent(
    client: httpx.AsyncClient, sent: c.Sent, kind: str
) -> None:
    device_id = first_of(sent, kind)
    last = sent.readings[device_id][-1]
    r = await client.get(f"/v1/devices/{device_id}/latest")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["device_type"] == kind
    assert body["zone"] == sent.zone[device_id]
    assert body["registered"] is False
    assert datetime.fromisoformat(body["time"]) == last.ts
    expected = {k: v for k, v in last.model_dump(exclude={"ts"}).items() if not isinstance(v, list)}
    assert {k: body["fields"][k] for k in expected} == expected
    assert body["units"]
    if kind == "evcharger":
        got = {int(x["connector_id"]): (x["status"], x["power"]) for x in body["connectors"]}
        assert got == {x.connectorId: (x.status, x.power) for x in last.connectors}  # type: ignore[attr-defined]
    else:
        assert body["connectors"] is None


async def test_latest_of_a_device_with_nothing_recent_is_404(
    client: httpx.AsyncClient, settings: object
) -> None:
    r = await client.get("/v1/devices/sl-99999/latest")
    assert r.status_code == 404
    assert "sl-99999" in r.json()["detail"]
    assert (await client.get("/v1/devices/bad%20id/latest")).status_code == 422


def buckets(points: list[tuple[datetime, float]], step: int) -> dict[datetime, list[float]]:
    """Values grouped like InfluxDB's GROUP BY time(step): windows aligned on the epoch."""
    out: dict[datetime, list[float]] = defaultdict(list)
    for t, v in points:
        start = int(t.timestamp()) // step * step
        out[datetime.fromtimestamp(start, UTC)].append(v)
    return out


@pytest.mark.parametrize(
    ("kind", "field", "agg", "fn"),
    [
        ("streetlight", "activePower", "mean", statistics.fmean),
        ("wastebin", "fillingLevel", "max", max),
        ("evcharger", "energy", "last", lambda vs: vs[-1]),
        ("streetlight", "voltage", "min", min),
    ],
)
async def test_series_aggregates_what_was_sent(
    client: httpx.AsyncClient, sent: c.Sent, kind: str, field: str, agg: str, fn: object
) -> None:
    device_id = first_of(sent, kind)
    readings = sent.readings[device_id]
    start, end = c.START, c.AS_OF
    r = await client.get(
        f"/v1/devices/{device_id}/series",
        params={"field": field, "agg": agg, "interval": "1h", "start": start.isoformat(),
                "end": end.isoformat()},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    expected = buckets([(x.ts, getattr(x, field)) for x in readings], 3600)
    got = {datetime.fromisoformat(p["time"]): p["value"] for p in body["points"]}
    assert got.keys() == expected.keys()
    for t, values in expected.items():
        assert got[t] == pytest.approx(fn(values), rel=1e-9), t  # type: ignore[operator]
    assert body["unit"] is not None
    assert body["device_type"] == kind


async def test_series_defaults_to_the_last_24_hours_in_5_minute_steps(
    client: httpx.AsyncClient, sent: c.Sent
) -> None:
    device_id = first_of(sent, "wastebin")
    body = (await client.get(f"/v1/devices/{device_id}/series?field=batteryLevel")).json()
    assert body["interval"] == "5m"
    assert datetime.fromisoformat(body["end"]) == c.AS_OF
    assert datetime.fromisoformat(body["start"]) == c.AS_OF - timedelta(hours=24)
    assert len(body["points"]) == len(sent.readings[device_id])  # one reading per 5 minutes


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"field": "nope"}, "field"),
        ({"field": "activePower; DROP DATABASE x"}, "field"),
        ({"field": "activePower", "interval": "5s"}, "interval"),
        ({"field": "activePower", "interval": "5 minutes"}, "interval"),
        ({"field": "activePower", "interval": "553767d"}, "interval"),
        ({"field": "activePower", "agg": "median"}, "agg"),
        ({"field": "activePower", "start": "2025-01-01T00:00:00+00:00",
          "end": "2026-03-01T00:00:00+00:00"}, "start"),
        ({"field": "activePower", "start": "2026-01-02T00:00:00+00:00",
          "end": "2026-01-01T00:00:00+00:00"}, "start"),
        ({"field": "activePower", "start": "2026-01-01T00:00:00"}, "start"),
        ({"field": "activePower", "start": "0001-01-01T00:00:00Z"}, "start"),
        ({"field": "activePower", "interval": "10s", "start": "2026-01-01T00:00:00+00:00",
          "end": "2026-01-08T00:00:00+00:00"}, "interval"),
    ],
)  # fmt: skip
async def test_bad_series_requests_are_422_problems(
    client: httpx.AsyncClient, sent: c.Sent, params: dict[str, str], where: str
) -> None:
    device_id = first_of(sent, "streetlight")
    r = await client.get(f"/v1/devices/{device_id}/series", params=params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert any(e["loc"][-1] == where for e in r.json()["errors"])


async def test_a_series_for_an_unknown_device_is_404(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/devices/sl-99999/series", params={"field": "activePower"})
    assert r.status_code == 404
