"""The catalogue: its data file is checked against the code, and live KPIs against the data."""

from __future__ import annotations

import httpx
import pytest
import yaml

from api.catalogue import SERVICES_FILE, CatalogueError, load, parse

from . import city as c


def test_the_catalogue_file_loads_and_names_the_plan_services() -> None:
    catalogue = load()
    live = {s.id for s in catalogue.services if s.status == "live"}
    assert live == {"public-lighting", "waste-collection", "ev-charging"}
    planned = {s.id for s in catalogue.services if s.status == "planned"}
    assert planned == {
        "sustainable-mobility", "safety", "welfare-caregivers-elderly", "tourism", "culture",
        "participation", "free-wifi",
    }  # fmt: skip
    waste = catalogue.get("waste-collection")
    assert waste is not None
    targets = {k.id: (k.target.operator, k.target.value) for k in waste.kpis if k.target}
    assert targets == {"separate_collection_share": (">=", 80), "material_recovery": (">", 50)}
    assert next(k for k in waste.kpis if k.id == "separate_collection_share").baseline == 75


def _with(change: dict[str, object], service: str = "public-lighting") -> str:
    raw = yaml.safe_load(SERVICES_FILE.read_text())
    target = next(s for s in raw["services"] if s["id"] == service)
    target.update(change)
    return yaml.safe_dump(raw)


@pytest.mark.parametrize(
    ("change", "service", "message"),
    [
        ({"kpis": [{"id": "x", "name": {"it": "a", "en": "b"}}]}, "public-lighting",
         "no KPI module"),
        ({"kpis": [{"id": "lamps_on", "unit": "count", "name": {"it": "a", "en": "b"}}]},
         "public-lighting", "declared with its device type"),
        ({"kpis": [{"id": "x", "measured": False, "name": {"it": "a", "en": "b"}}]},
         "public-lighting", "not measured needs a unit"),
        ({"device_types": ["streetlight"]}, "free-wifi", "planned service has no devices"),
        ({"sdgs": [18]}, "culture", "sdgs must be distinct goal numbers"),
        ({"strategic_line": "Piano energetico"}, "public-lighting", "strategic_line"),
        ({"datasets": ["nope"]}, "ev-charging", "unknown dataset 'nope'"),
        ({"name": {"it": "solo italiano"}}, "tourism", "name.en"),
        ({"colour": "red"}, "tourism", "colour"),
        ({"device_types": []}, "ev-charging", "live service names the device types"),
    ],
)  # fmt: skip
def test_a_wrong_catalogue_is_refused_saying_where(
    change: dict[str, object], service: str, message: str
) -> None:
    with pytest.raises(CatalogueError, match=message):
        parse(_with(change, service))


def test_duplicate_ids_and_bad_yaml_are_refused() -> None:
    raw = yaml.safe_load(SERVICES_FILE.read_text())
    raw["services"].append(raw["services"][0])
    with pytest.raises(CatalogueError, match="unique"):
        parse(yaml.safe_dump(raw))
    with pytest.raises(CatalogueError, match="not valid YAML"):
        parse("services: [unclosed")


async def kpis(client: httpx.AsyncClient, service: str) -> dict[str, dict[str, object]]:
    body = (await client.get(f"/v1/services/{service}")).json()
    return {k["id"]: k for k in body["kpis"]}


async def test_lighting_kpis_match_what_the_street_lights_sent(
    client: httpx.AsyncClient, sent: c.Sent
) -> None:
    expected = c.lighting_kpis(sent)
    assert expected["lamps_on"] > 0
    assert expected["lamps_failed"] > 0
    assert expected["energy_saved_24h"] > 0
    got = await kpis(client, "public-lighting")
    for name, value in expected.items():
        assert got[name]["value"] == pytest.approx(value, rel=1e-3, abs=1e-3), name


async def test_waste_kpis_match_what_the_bins_sent(client: httpx.AsyncClient, sent: c.Sent) -> None:
    expected = c.waste_kpis(sent)
    assert expected["bins_full"] > 0
    assert expected["collections_24h"] > 0
    got = await kpis(client, "waste-collection")
    for name in ("bins_reporting", "bins_full", "bins_burning", "collections_24h"):
        assert got[name]["value"] == expected[name], name
    assert got["bins_full"]["breakdown"] == expected["bins_full_breakdown"]
    share = got["separate_collection_share"]
    assert share["value"] == pytest.approx(expected["separate_collection_share"], abs=0.01)
    assert share["target_met"] == (share["value"] >= 80)
    recovery = got["material_recovery"]
    assert recovery["measured"] is False
    assert recovery["value"] is None


async def test_charging_kpis_match_what_the_stations_sent(
    client: httpx.AsyncClient, sent: c.Sent
) -> None:
    expected = c.charging_kpis(sent)
    assert expected["connectors_faulted"] + expected["connectors_charging"] > 0
    got = await kpis(client, "ev-charging")
    for name, value in expected.items():
        assert got[name]["value"] == pytest.approx(value, rel=1e-6, abs=1e-3), name


async def test_the_list_has_every_service_and_planned_ones_carry_no_figures(
    client: httpx.AsyncClient,
) -> None:
    body = (await client.get("/v1/services")).json()
    assert body["count"] == len(load().services) == len(body["data"])
    assert body["as_of"].startswith(c.AS_OF.strftime("%Y-%m-%dT%H:%M"))
    for s in body["data"]:
        if s["status"] == "planned":
            assert s["kpis"] == []
            assert s["device_types"] == []
            assert s["datasets"] == []
        else:
            assert any(k["value"] is not None for k in s["kpis"])
            assert s["datasets"]
            assert all(d["formats"]["csv"].endswith(".csv") for d in s["datasets"])
    assert (await client.get("/v1/services/public-lighting")).json()["sdgs"] == [7, 11, 13]


async def test_an_unknown_service_is_a_404_problem(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/services/teleportation")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert "public-lighting" in r.json()["detail"]
