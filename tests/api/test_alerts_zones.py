"""Alerts and zone summaries, against what the devices sent."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import httpx
import pytest

from . import city as c
from .test_devices import register_fleet


def expected_alerts(sent: c.Sent, registered: set[str]) -> dict[str, str]:
    """Alert id -> zone."""
    out: dict[str, str] = {}
    for d, r in c.fresh(sent, "streetlight").items():
        if r.status != "ok":
            out[f"lamp_failure:{d}"] = sent.zone[d]
    for d, r in c.fresh(sent, "wastebin").items():
        if r.fillingLevel >= c.THRESHOLD:
            out[f"bin_full:{d}"] = sent.zone[d]
        if r.status == "burning":
            out[f"bin_burning:{d}"] = sent.zone[d]
    for d, r in c.fresh(sent, "evcharger").items():
        if any(x.status == "Faulted" for x in r.connectors):
            out[f"charger_faulted:{d}"] = sent.zone[d]
    for d, r in c.fresh(sent, "airquality").items():
        for kind in c.air_alerts(r):
            out[f"{kind}:{d}"] = sent.zone[d]
    for d in c.offline(sent, registered):
        out[f"device_offline:{d}"] = sent.zone.get(d, "Cavatigozzi")
    return out


NEVER_SEEN = {
    "device_id": "wb-never", "device_type": "wastebin", "zone": "Cavatigozzi", "lat": 45.1385,
    "lon": 9.955,
}  # fmt: skip


async def test_alerts_are_exactly_the_conditions_in_the_data(
    client: httpx.AsyncClient, sent: c.Sent, write_key: str
) -> None:
    r = await client.post("/v1/devices", json=NEVER_SEEN, headers={"X-API-Key": write_key})
    assert r.status_code == 201
    expected = expected_alerts(sent, {"wb-never"})
    kinds = Counter(a.split(":")[0] for a in expected)
    assert all(kinds[k] for k in ("lamp_failure", "bin_full", "bin_burning", "charger_faulted"))
    body = (await client.get("/v1/alerts")).json()
    assert {a["id"]: a["zone"] for a in body["data"]} == expected
    assert body["count"] == len(expected)
    severities = [a["severity"] for a in body["data"]]
    assert severities == sorted(severities, key=["critical", "warning", "info"].index)
    offline = {a["device_id"]: a for a in body["data"] if a["kind"] == "device_offline"}
    since = c.offline(sent, {"wb-never"})
    assert set(offline) == {c.GONE, c.LAST_WILL, "wb-never"}
    for device_id, alert in offline.items():
        seen = alert["observed_at"]
        assert (datetime.fromisoformat(seen) if seen else None) == since[device_id]
    assert offline["wb-never"]["detail"] == {"registered": True, "last_will": False}
    assert offline[c.LAST_WILL]["detail"]["last_will"] is True
    assert offline[c.GONE]["message"]["en"] == "Device silent for 118 minutes"
    burning = next(a for a in body["data"] if a["kind"] == "bin_burning")
    assert burning["severity"] == "critical"
    assert burning["value"] == c.fresh(sent, "wastebin")[burning["device_id"]].temperature


@pytest.mark.parametrize(
    ("params", "keep"),
    [
        ({"kind": "bin_full"}, lambda a: a.startswith("bin_full:")),
        ({"device_type": "streetlight"}, lambda a: a.split(":")[1].startswith("sl-")),
    ],
)
async def test_alerts_filter(
    client: httpx.AsyncClient, sent: c.Sent, params: dict[str, str], keep: object
) -> None:
    expected = {a for a in expected_alerts(sent, set()) if keep(a)}  # type: ignore[operator]
    body = (await client.get("/v1/alerts", params=params)).json()
    assert {a["id"] for a in body["data"]} == expected
    assert (await client.get("/v1/alerts", params={"kind": "meteor"})).status_code == 422


async def test_zone_summaries_count_what_each_zone_reported(
    client: httpx.AsyncClient, sent: c.Sent, write_key: str
) -> None:
    await register_fleet(client, write_key, sent)
    registered = set(sent.place)
    alerts = expected_alerts(sent, registered)
    body = (await client.get("/v1/zones")).json()
    zones = {z["zone"]: z for z in body["data"]}
    assert len(zones) == 13
    lamps = c.fresh(sent, "streetlight")
    bins = c.fresh(sent, "wastebin")
    stations = c.fresh(sent, "evcharger")
    air = c.fresh(sent, "airquality")
    for name, z in zones.items():
        here = {d for d, zone in sent.zone.items() if zone == name}
        assert z["figures"] == {
            "lamps_on": sum(lamps[d].activePower > 0 for d in here & lamps.keys()),
            "lamps_failed": sum(lamps[d].status != "ok" for d in here & lamps.keys()),
            "bins_full": sum(bins[d].fillingLevel >= c.THRESHOLD for d in here & bins.keys()),
            "bins_burning": sum(bins[d].status == "burning" for d in here & bins.keys()),
            "stations_with_available": sum(
                any(x.status == "Available" for x in stations[d].connectors)
                for d in here & stations.keys()
            ),
            "stations_faulted": sum(
                any(x.status == "Faulted" for x in stations[d].connectors)
                for d in here & stations.keys()
            ),
            "air_stations_faulted": sum(air[d].status == "sensorFault" for d in here & air.keys()),
        }, name
        for kind, fresh in (("streetlight", lamps), ("wastebin", bins), ("evcharger", stations),
                            ("airquality", air)):  # fmt: skip
            counts = z["devices"][kind]
            assert counts["reporting"] == len(here & fresh.keys()), (name, kind)
            assert counts["registered"] == sum(
                1 for d in registered if sent.zone[d] == name and sent.kind[d] == kind
            )
        assert z["alerts"] == dict(
            sorted(Counter(a.split(":")[0] for a, zone in alerts.items() if zone == name).items())
        )
        reporting = here & (lamps.keys() | bins.keys() | stations.keys() | air.keys())
        assert z["health"]["unregistered_reporting"] == len(reporting - registered)
    one = (await client.get("/v1/zones/Sant'Ambrogio")).json()
    assert one == zones["Sant'Ambrogio"]
    assert (await client.get("/v1/zones/Atlantis")).status_code == 422


async def test_a_bins_own_threshold_overrides_the_global_one(
    client: httpx.AsyncClient, sent: c.Sent, write_key: str
) -> None:
    """Alert, catalogue KPI and zone figure all follow the registry's per-bin threshold."""
    auth = {"X-API-Key": write_key}
    bins = c.fresh(sent, "wastebin")
    full = c.full_bins(sent)
    # one bin below the global threshold that its own makes full (exactly at it: "at or
    # above"), and one full bin whose own threshold of 1 (never reached here) makes it not
    lower = next(d for d, r in sorted(bins.items()) if 0 < r.fillingLevel < c.THRESHOLD)
    higher = next(d for d, r in sorted(full.items()) if r.fillingLevel < 1)
    for d, limit in ((lower, bins[lower].fillingLevel), (higher, 1.0)):
        lat, lon = sent.place[d]
        body = {"device_id": d, "device_type": "wastebin", "zone": sent.zone[d], "lat": lat,
                "lon": lon, "threshold": limit}  # fmt: skip
        r = await client.post("/v1/devices", json=body, headers=auth)
        assert r.status_code == 201, r.text
        assert r.json()["threshold"] == limit

    async def bins_full() -> tuple[set[str], int, dict[str, int]]:
        alerts = (await client.get("/v1/alerts", params={"kind": "bin_full"})).json()["data"]
        services = (await client.get("/v1/services/waste-collection")).json()["kpis"]
        kpi = next(k for k in services if k["id"] == "bins_full")
        zones = (await client.get("/v1/zones")).json()["data"]
        return (
            {a["device_id"] for a in alerts},
            kpi["value"],
            {z["zone"]: z["figures"]["bins_full"] for z in zones},
        )

    expected = (set(full) | {lower}) - {higher}
    alerted, kpi, zones = await bins_full()
    assert (alerted, kpi) == (expected, len(expected))
    assert {z: n for z, n in zones.items() if n} == Counter(sent.zone[d] for d in expected)
    # null in a PATCH clears a bin's threshold: the global setting applies again
    for d in (lower, higher):
        r = await client.patch(f"/v1/devices/{d}", json={"threshold": None}, headers=auth)
        assert r.status_code == 200
        assert r.json()["threshold"] is None
    alerted, kpi, _ = await bins_full()
    assert (alerted, kpi) == (set(full), len(full))
