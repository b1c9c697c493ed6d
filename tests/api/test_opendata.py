"""Open data: each download holds the aggregates of what was sent; the DCAT-AP_IT catalogue
describes every dataset with its licence and working download links."""

from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from api.opendata.registry import DATASETS
from smartcity.city import ZONES
from smartcity.devices.airquality import POLLUTANTS

from . import city as c
from .test_devices import register_fleet

ROME = ZoneInfo("Europe/Rome")
CENTROID = {z.name: [z.lon, z.lat] for z in ZONES}


def day(t: Any) -> str:
    return t.astimezone(ROME).date().isoformat()


def lighting_days(sent: c.Sent) -> list[dict[str, Any]]:
    per_lamp: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for d, rs in sent.readings.items():
        if sent.kind[d] == "streetlight":
            for r in rs:
                per_lamp[(day(r.ts), sent.zone[d], d)].append(r.totalActiveEnergyImport)  # type: ignore[attr-defined]
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for (dd, zone, _lamp), meter in per_lamp.items():
        row = rows.setdefault((dd, zone), {"day": dd, "zone": zone, "lamps": 0, "energy_kwh": 0.0,
                                           "failures": 0})  # fmt: skip
        row["lamps"] += 1
        row["energy_kwh"] += max(meter) - min(meter)
    for d, es in sent.events.items():
        for e in es:
            if sent.kind[d] == "streetlight" and e.status != "ok":  # type: ignore[attr-defined]
                rows[(day(e.ts), sent.zone[d])]["failures"] += 1
    return [rows[k] for k in sorted(rows)]


def collection_days(sent: c.Sent) -> list[dict[str, Any]]:
    levels: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for d, e in c.events(sent, "emptied"):
        levels[(day(e.ts), sent.zone[d], e.storedWasteKind)].append(e.collectedLevel)  # type: ignore[attr-defined]
    return [
        {"day": k[0], "zone": k[1], "stream": k[2], "collections": len(v),
         "mean_collected_level": statistics.fmean(v)}
        for k, v in sorted(levels.items())
    ]  # fmt: skip


def charging_days(sent: c.Sent) -> list[dict[str, Any]]:
    stops: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for d, e in c.events(sent, "sessionStop"):
        stops[(day(e.ts), sent.zone[d])].append(e)
    return [
        {"day": k[0], "zone": k[1], "sessions": len(v),
         "energy_kwh": sum(e.energy for e in v),
         "mean_duration_min": statistics.fmean(e.duration for e in v) / 60}
        for k, v in sorted(stops.items())
    ]  # fmt: skip


def same_rows(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.keys() == e.keys()
        for k, v in e.items():
            if isinstance(v, float):
                assert float(g[k]) == pytest.approx(v, abs=0.06 if "min" in k else 2e-3), (e, k)
            else:
                assert str(g[k]) == str(v), (e, k)


@pytest.mark.parametrize(
    ("dataset", "expect"),
    [
        ("streetlight-energy-daily", lighting_days),
        ("wastebin-collections-daily", collection_days),
        ("evcharger-usage-daily", charging_days),
    ],
)
async def test_daily_datasets_in_every_format(
    client: httpx.AsyncClient, sent: c.Sent, dataset: str, expect: Any
) -> None:
    expected = expect(sent)
    assert expected
    r = await client.get(f"/v1/opendata/{dataset}.json")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["license"] == "https://creativecommons.org/licenses/by/4.0/"
    assert (body["start"], body["end"]) == ("2025-12-18", "2026-01-16")  # 30 days to as-of
    same_rows(body["data"], expected)
    r = await client.get(f"/v1/opendata/{dataset}.csv")
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    same_rows(list(csv.DictReader(io.StringIO(r.text))), expected)
    r = await client.get(f"/v1/opendata/{dataset}.geojson")
    assert r.headers["content-type"] == "application/geo+json"
    features = r.json()["features"]
    same_rows([f["properties"] for f in features], expected)
    for f in features:
        assert f["geometry"]["coordinates"] == CENTROID[f["properties"]["zone"]]
    one_day = await client.get(f"/v1/opendata/{dataset}.json?start=2026-01-16&end=2026-01-16")
    same_rows(one_day.json()["data"], [e for e in expected if e["day"] == "2026-01-16"])


def air_days(sent: c.Sent) -> list[dict[str, Any]]:
    """Each station's daily means (Rome days), at the place it is registered."""
    per: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for d, rs in sent.readings.items():
        if sent.kind[d] == "airquality":
            for r in rs:
                per[(day(r.ts), d)].append(r)
    return [
        {"day": dd, "station": d, "zone": sent.zone[d], "lat": sent.place[d][0],
         "lon": sent.place[d][1],
         **{p: statistics.fmean(getattr(r, p) for r in v) for p in POLLUTANTS}}
        for (dd, d), v in sorted(per.items())
    ]  # fmt: skip


async def test_air_quality_daily_means_per_station_in_every_format(
    client: httpx.AsyncClient, sent: c.Sent, write_key: str
) -> None:
    await register_fleet(client, write_key, sent)
    expected = air_days(sent)
    assert {e["station"] for e in expected} == {
        d for d, kind in sent.kind.items() if kind == "airquality"
    }

    def same(got: list[dict[str, Any]]) -> None:
        assert [(g["day"], g["station"], g["zone"]) for g in got] == [
            (e["day"], e["station"], e["zone"]) for e in expected
        ]
        for g, e in zip(got, expected, strict=True):
            for p in ("lat", "lon", *POLLUTANTS):  # rounded to 0.1 (CO to 0.01)
                assert float(g[p]) == pytest.approx(e[p], abs=0.051), (e, p)

    body = (await client.get("/v1/opendata/airquality-daily.json")).json()
    assert body["license"] == "https://creativecommons.org/licenses/by/4.0/"
    same(body["data"])
    same(list(csv.DictReader(io.StringIO(
        (await client.get("/v1/opendata/airquality-daily.csv")).text
    ))))  # fmt: skip
    features = (await client.get("/v1/opendata/airquality-daily.geojson")).json()["features"]
    same([f["properties"] for f in features])
    for f in features:  # each station where it stands, not its zone's centroid
        lat, lon = sent.place[f["properties"]["station"]]
        assert f["geometry"]["coordinates"] == [lon, lat]


async def test_device_locations_dataset_is_the_registry(
    client: httpx.AsyncClient, sent: c.Sent, write_key: str
) -> None:
    ids = await register_fleet(client, write_key, sent)
    features = (await client.get("/v1/opendata/devices.geojson")).json()["features"]
    assert [f["properties"]["device_id"] for f in features] == ids
    for f in features:
        lat, lon = sent.place[f["properties"]["device_id"]]
        assert f["geometry"] == {"type": "Point", "coordinates": [lon, lat]}
    rows = list(csv.DictReader(io.StringIO((await client.get("/v1/opendata/devices.csv")).text)))
    assert [r["device_id"] for r in rows] == ids


@pytest.mark.parametrize(
    "query",
    [
        "start=2026-01-10&end=2026-01-01",
        "start=2024-01-01&end=2026-01-01",
        "start=yesterday",
        "start=2026-02-30",
        "start=0001-01-01&end=0001-01-05",
        "end=9999-12-31",
    ],
)
async def test_bad_day_ranges_are_422(client: httpx.AsyncClient, query: str) -> None:
    r = await client.get(f"/v1/opendata/evcharger-usage-daily.csv?{query}")
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"


async def test_unknown_dataset_or_format_is_refused(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/opendata/people.csv")).status_code == 422
    assert (await client.get("/v1/opendata/devices.xlsx")).status_code == 422


async def test_dcat_ap_it_catalogue_describes_every_dataset_with_working_links(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/v1/opendata/catalog")
    assert r.headers["content-type"] == "application/ld+json"
    cat = r.json()
    assert "dcatapit:Catalog" in cat["@type"]
    assert cat["dct:publisher"]["foaf:name"] == "Comune di Cremona"
    described = (await client.get("/v1/opendata/datasets")).json()
    assert len(cat["dcat:dataset"]) == len(described) == len(DATASETS)
    eu = "http://publications.europa.eu/resource/authority"
    for ds in cat["dcat:dataset"]:
        assert "dcatapit:Dataset" in ds["@type"]
        assert ds["dct:identifier"].startswith("c_d150:")
        assert ds["dct:accrualPeriodicity"]["@id"].startswith(f"{eu}/frequency/")
        assert ds["dcat:theme"]["@id"].startswith(f"{eu}/data-theme/")
        assert ds["dct:rightsHolder"]["dct:identifier"] == "c_d150"
        assert {t["@language"] for t in ds["dct:title"]} == {"it", "en"}
        formats = set()
        for dist in ds["dcat:distribution"]:
            assert dist["dct:license"]["@id"] == "https://creativecommons.org/licenses/by/4.0/"
            url = dist["dcat:downloadURL"]["@id"]
            got = await client.get(url.removeprefix("http://api.test"))
            assert got.status_code == 200, url
            assert got.headers["content-type"].split(";")[0] == dist["dcat:mediaType"]
            formats.add(dist["dct:format"]["@id"].rsplit("/", 1)[1])
        assert formats == {"CSV", "JSON", "GEOJSON"}
    # every address of ours the catalogue gives resolves: catalogue, datasets, downloads, home
    ours = sorted({u for u in ids(cat) if u.startswith("http://api.test/")})
    assert len(ours) >= 2 + 4 * len(DATASETS), ours
    for url in ours:
        assert (await client.get(url.removeprefix("http://api.test"))).status_code == 200, url


def ids(node: object) -> Iterator[str]:
    """Every ``@id`` in a JSON-LD document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "@id" and isinstance(value, str):
                yield value
            else:
                yield from ids(value)
    elif isinstance(node, list):
        for item in node:
            yield from ids(item)
