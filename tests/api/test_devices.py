"""The device registry: public listing with filters, changes with a write key; every test runs
on both registry backends, SQLite and PostgreSQL (each a real database of the test's own)."""

from __future__ import annotations

from http import HTTPStatus

import httpx
import pytest
from sqlalchemy import inspect, text

from api.registry.crud import get_device, update_device, upsert_devices
from api.schemas.devices import DeviceCreate, DeviceUpdate
from api.settings import ApiSettings
from smartcity.registry.db import make_engine

from . import city as c
from .conftest import ON_EVERY_REGISTRY_BACKEND, registry_session, serve

pytestmark = ON_EVERY_REGISTRY_BACKEND
PROBLEM = "application/problem+json"


def device(device_id: str, kind: str = "streetlight", zone: str = "Centro", **extra: object):
    return {"device_id": device_id, "device_type": kind, "zone": zone, "lat": 45.1335,
            "lon": 10.0245, **extra}  # fmt: skip


async def register_fleet(client: httpx.AsyncClient, key: str, sent: c.Sent) -> list[str]:
    """Register every simulated device where the simulator placed it."""
    ids = sorted(sent.place)
    for d in ids:
        lat, lon = sent.place[d]
        body = {"device_id": d, "device_type": sent.kind[d], "zone": sent.zone[d], "lat": lat,
                "lon": lon}  # fmt: skip
        r = await client.post("/v1/devices", json=body, headers={"X-API-Key": key})
        assert r.status_code == 201, r.text
    return ids


async def test_a_lorawan_sensor_is_registered_with_its_dev_eui_and_profile(
    client: httpx.AsyncClient, write_key: str
) -> None:
    auth = {"X-API-Key": write_key}
    lora = {"dev_eui": "24E124128C00A001", "lorawan_profile": "milesight-em400-udl"}
    r = await client.post("/v1/devices", json=device("wb-l1", "wastebin", **lora), headers=auth)
    assert r.status_code == 201, r.text
    assert (r.json()["dev_eui"], r.json()["lorawan_profile"]) == (
        "24e124128c00a001",
        "milesight-em400-udl",
    )
    again = await client.post("/v1/devices", json=device("wb-l2", "wastebin", **lora), headers=auth)
    assert again.status_code == 409, again.text  # one DevEUI, one device
    for bad in (
        {"dev_eui": "24e124128c00a002"},  # without a profile
        {"dev_eui": "24e1", "lorawan_profile": "milesight-em400-udl"},
        {"dev_eui": "24e124128c00a003", "lorawan_profile": "no-such-model"},
    ):
        r = await client.post("/v1/devices", json=device("wb-l3", "wastebin", **bad), headers=auth)
        assert r.status_code == 422, (bad, r.text)
    wrong_type = device("sl-l4", "streetlight", dev_eui="24e124128c00a004",
                        lorawan_profile="milesight-em400-udl")  # fmt: skip
    assert (await client.post("/v1/devices", json=wrong_type, headers=auth)).status_code == 422


async def test_create_read_update_delete_with_a_write_key(
    client: httpx.AsyncClient, write_key: str
) -> None:
    auth = {"X-API-Key": write_key}
    r = await client.post("/v1/devices", json=device("sl-x1", name="Via Dante 1"), headers=auth)
    assert r.status_code == 201
    created = r.json()
    assert created["name"] == "Via Dante 1"
    assert created["created_at"].endswith(("Z", "+00:00"))  # aware, also on SQLite
    assert (await client.get("/v1/devices/sl-x1")).json() == created
    r = await client.post("/v1/devices", json=device("sl-x1"), headers=auth)
    assert r.status_code == 409
    assert r.headers["content-type"] == PROBLEM
    r = await client.patch("/v1/devices/sl-x1", json={"zone": "Po", "lat": 45.124}, headers=auth)
    assert r.status_code == 200
    assert (r.json()["zone"], r.json()["lat"], r.json()["name"]) == ("Po", 45.124, "Via Dante 1")
    assert (await client.delete("/v1/devices/sl-x1", headers=auth)).status_code == 204
    assert (await client.get("/v1/devices/sl-x1")).status_code == 404
    assert (await client.delete("/v1/devices/sl-x1", headers=auth)).status_code == 404


async def test_listing_filters_by_type_zone_and_box(
    client: httpx.AsyncClient, write_key: str, sent: c.Sent
) -> None:
    ids = await register_fleet(client, write_key, sent)
    everything = (await client.get("/v1/devices", params={"limit": 1000})).json()
    assert everything["count"] == len(ids)
    assert [d["device_id"] for d in everything["data"]] == ids
    for kind in c.COUNTS:
        got = (await client.get("/v1/devices", params={"device_type": kind})).json()
        assert got["count"] == c.COUNTS[kind]
    zone = sent.zone[ids[0]]
    got = (await client.get("/v1/devices", params={"zone": zone, "limit": 1000})).json()
    assert {d["device_id"] for d in got["data"]} == {d for d in ids if sent.zone[d] == zone}
    lat, lon = sent.place[ids[0]]
    box = f"{lon - 0.002},{lat - 0.002},{lon + 0.002},{lat + 0.002}"
    got = (await client.get("/v1/devices", params={"bbox": box, "limit": 1000})).json()
    inside = {
        d for d in ids
        if abs(sent.place[d][0] - lat) <= 0.002 and abs(sent.place[d][1] - lon) <= 0.002
    }  # fmt: skip
    assert ids[0] in inside
    assert {d["device_id"] for d in got["data"]} == inside
    page = (await client.get("/v1/devices", params={"limit": 5, "offset": 5})).json()
    assert [d["device_id"] for d in page["data"]] == ids[5:10]


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"device_type": "toaster"}, "device_type"),
        ({"zone": "Atlantis"}, "zone"),
        ({"bbox": "10,45,9,46"}, "bbox"),
        ({"bbox": "1,2,3"}, "bbox"),
        ({"limit": 0}, "limit"),
        ({"limit": 100_000}, "limit"),
    ],
)
async def test_bad_filters_are_422_problems_naming_the_parameter(
    client: httpx.AsyncClient, params: dict[str, object], where: str
) -> None:
    r = await client.get("/v1/devices", params=params)
    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == 422
    assert body["title"] == HTTPStatus(422).phrase
    assert any(e["loc"][-1] == where for e in body["errors"])


@pytest.mark.parametrize(
    "bad",
    [
        device("sl 1"),
        device("x" * 65),
        device("sl-1", kind="toaster"),
        device("sl-1", zone="Milano"),
        device("sl-1", lat=91),
        {**device("sl-1"), "lat": "NaN"},
        {**device("sl-1"), "owner": "me"},
        device("sl-1", lon=False),  # a number, not a boolean
        device("sl-1", installed_on=0),  # a number is not a date (nor a Unix time)
        device("sl-1", name="Via Dante\x001"),  # PostgreSQL text cannot hold NUL
    ],
)
async def test_invalid_devices_are_refused(
    client: httpx.AsyncClient, write_key: str, bad: dict[str, object]
) -> None:
    r = await client.post("/v1/devices", json=bad, headers={"X-API-Key": write_key})
    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM


async def test_changes_need_a_key_with_write_scope(
    client: httpx.AsyncClient, read_key: str, write_key: str
) -> None:
    body = device("sl-auth")
    r = await client.post("/v1/devices", json=body)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "ApiKey"
    assert r.headers["content-type"] == PROBLEM
    r = await client.post("/v1/devices", json=body, headers={"X-API-Key": read_key})
    assert r.status_code == 403
    assert "write" in r.json()["detail"]
    r = await client.post("/v1/devices", json=body, headers={"X-API-Key": write_key + "x"})
    assert r.status_code == 401
    r = await client.post("/v1/devices", json=body, headers={"X-API-Key": "sck_nonsense"})
    assert r.status_code == 401
    for method in ("PATCH", "DELETE"):
        r = await client.request(method, "/v1/devices/sl-auth", json={}, headers={})
        assert r.status_code == 401, method
        r = await client.request(method, "/v1/devices/sl-auth", json={},
                                 headers={"X-API-Key": read_key})  # fmt: skip
        assert r.status_code == 403, method
    assert (await client.get("/v1/devices/sl-auth")).status_code == 404


async def test_a_bin_may_carry_its_own_threshold_and_only_a_bin(
    client: httpx.AsyncClient, write_key: str
) -> None:
    auth = {"X-API-Key": write_key}
    r = await client.post("/v1/devices", json=device("wb-t1", kind="wastebin"), headers=auth)
    assert r.json()["threshold"] is None  # unset: the global --bin-threshold applies
    r = await client.patch("/v1/devices/wb-t1", json={"threshold": 0.65}, headers=auth)
    assert (r.status_code, r.json()["threshold"]) == (200, 0.65)
    r = await client.patch("/v1/devices/wb-t1", json={"zone": "Po"}, headers=auth)
    assert r.json()["threshold"] == 0.65  # kept when not named
    for bad in (0, 1.01, -0.2, "0.7", True):
        r = await client.patch("/v1/devices/wb-t1", json={"threshold": bad}, headers=auth)
        assert r.status_code == 422, bad
    r = await client.post("/v1/devices", json=device("sl-t1", threshold=0.5), headers=auth)
    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["errors"][0]["loc"] == ["body", "threshold"]
    # a bin with a threshold cannot become a street light unless the threshold goes too
    r = await client.patch("/v1/devices/wb-t1", json={"device_type": "streetlight"}, headers=auth)
    assert r.status_code == 422
    r = await client.patch("/v1/devices/wb-t1", json={"device_type": "streetlight",
                                                      "threshold": None}, headers=auth)  # fmt: skip
    assert (r.status_code, r.json()["threshold"]) == (200, None)


def test_registering_again_overwrites_what_is_given_and_keeps_what_an_operator_set(
    settings: ApiSettings,
) -> None:
    """As smartcity up does on every start for the simulated fleet."""

    def bin_in(zone: str) -> DeviceCreate:
        return DeviceCreate(device_id="wb-up", device_type="wastebin", zone=zone, lat=45.1,
                            lon=10.0)  # fmt: skip

    with registry_session(settings.registry_url) as session:
        upsert_devices(session, [bin_in("Po")])
        device = get_device(session, "wb-up")
        assert device is not None
        update_device(session, device, DeviceUpdate(threshold=0.9, name="Via Dante"))
        assert upsert_devices(session, [bin_in("Centro")]) == 1
        again = get_device(session, "wb-up")
        assert again is not None
        assert (again.zone, again.threshold, again.name) == ("Centro", 0.9, "Via Dante")


async def test_a_registry_from_before_thresholds_gains_the_column(
    settings: ApiSettings, write_key: str
) -> None:
    """create_all makes no new columns in an existing table: make_engine adds them."""
    engine = make_engine(settings.registry_url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO devices (device_id, device_type, zone, lat, lon, "
                          "created_at, updated_at) VALUES ('wb-old', 'wastebin', 'Po', 45.1, "
                          "10.0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))  # fmt: skip
        conn.execute(text("ALTER TABLE devices DROP COLUMN threshold"))
    assert "threshold" not in {c["name"] for c in inspect(engine).get_columns("devices")}
    engine.dispose()
    async with serve(settings) as client:
        assert (await client.get("/v1/devices/wb-old")).json()["threshold"] is None
        r = await client.patch(
            "/v1/devices/wb-old", json={"threshold": 0.9}, headers={"X-API-Key": write_key}
        )
        assert (r.status_code, r.json()["threshold"]) == (200, 0.9)
