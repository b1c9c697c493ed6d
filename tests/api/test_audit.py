"""The audit trail through the API: every change recorded once, read back (JSON and CSV) by
admins only, never changed. Every test runs on both registry backends, SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import os

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import inspect, select, text, update

from api.security import KeyStore, split_key
from api.settings import ApiSettings
from smartcity import audit
from smartcity.registry.db import make_engine
from smartcity.registry.models import ApiKey
from stack.up import UpSettings, prepare_registry

from ..conftest import run_smartcity
from .conftest import ON_EVERY_REGISTRY_BACKEND, make_key, registry_session, serve

pytestmark = ON_EVERY_REGISTRY_BACKEND
PROBLEM = "application/problem+json"
BIN = {"device_id": "wb-a1", "device_type": "wastebin", "zone": "Po", "lat": 45.12, "lon": 10.02}


def key_id(key: str) -> str:
    parts = split_key(key)
    assert parts is not None
    return parts[0]


async def trail(client: httpx.AsyncClient, admin_key: str, **params: object) -> dict:
    r = await client.get("/v1/audit", params=params, headers={"X-API-Key": admin_key})
    assert r.status_code == 200, r.text
    return r.json()


def summary(entries: list[dict]) -> list[tuple[str, str, str | None, str]]:
    return [(e["actor"], e["action"], e["device_id"], e["outcome"]) for e in entries]


async def test_every_registry_and_key_change_is_recorded_once(
    client: httpx.AsyncClient, write_key: str, admin_key: str
) -> None:
    writer, admin = {"X-API-Key": write_key}, {"X-API-Key": admin_key}
    assert (await client.post("/v1/devices", json=BIN, headers=writer)).status_code == 201
    assert (await client.post("/v1/devices", json=BIN, headers=writer)).status_code == 409
    r = await client.patch("/v1/devices/wb-a1", json={"threshold": 0.8}, headers=writer)
    assert r.status_code == 200
    assert (await client.delete("/v1/devices/wb-a1", headers=writer)).status_code == 204
    assert (await client.delete("/v1/devices/wb-a1", headers=writer)).status_code == 404
    assert (await client.patch("/v1/devices/sl-none", json={}, headers=writer)).status_code == 404
    r = await client.post("/v1/keys", json={"name": "AEM", "scope": "read"}, headers=admin)
    assert r.status_code == 201
    new_id = r.json()["key_id"]
    assert (await client.delete(f"/v1/keys/{new_id}", headers=admin)).status_code == 204
    assert (await client.delete("/v1/keys/0123456789ab", headers=admin)).status_code == 404
    # refused before any handler: invalid input and a missing scope are not actions
    assert (await client.post("/v1/devices", json={}, headers=writer)).status_code == 422
    assert (await client.post("/v1/keys", json={"name": "x", "scope": "read"},
                              headers=writer)).status_code == 403  # fmt: skip

    got = await trail(client, admin_key)
    w, a = f"key:{key_id(write_key)}", f"key:{key_id(admin_key)}"
    assert summary(got["data"]) == [  # newest first
        (a, "key.revoke", None, "refused: no such key"),
        (a, "key.revoke", None, "ok"),
        (a, "key.create", None, "ok"),
        (w, "device.update", "sl-none", "refused: device 'sl-none' is not in the registry"),
        (w, "device.delete", "wb-a1", "refused: device 'wb-a1' is not in the registry"),
        (w, "device.delete", "wb-a1", "ok"),
        (w, "device.update", "wb-a1", "ok"),
        (w, "device.create", "wb-a1", "refused: device 'wb-a1' is already registered; PATCH it"),
        (w, "device.create", "wb-a1", "ok"),
    ]
    assert got["count"] == 9
    by_action = {(e["action"], e["outcome"]): e for e in got["data"]}
    assert '"threshold": 0.8' in by_action["device.update", "ok"]["detail"]
    assert '"zone": "Po"' in by_action["device.create", "ok"]["detail"]
    created = by_action["key.create", "ok"]["detail"]
    assert new_id in created
    assert '"scope": "read"' in created
    assert "sck_" not in created  # never the key itself
    assert new_id in by_action["key.revoke", "ok"]["detail"]
    assert [e["id"] for e in got["data"]] == sorted((e["id"] for e in got["data"]), reverse=True)


async def test_keys_made_and_revoked_from_the_cli_are_recorded_as_the_os_user(
    settings: ApiSettings, admin_key: str
) -> None:
    env = {**os.environ, "SMARTCITY_API_REGISTRY_URL": settings.registry_url}
    made = run_smartcity("api", "create-key", "--scope", "write", "--name", "AEM", env=env)
    assert made.returncode == 0, made.stderr
    new_id = key_id(made.stdout.split()[0])
    revoked = run_smartcity("api", "revoke-key", new_id, env=env)
    assert revoked.returncode == 0, revoked.stderr
    unknown = run_smartcity("api", "revoke-key", "fedcba987654", env=env)
    assert unknown.returncode != 0
    async with serve(settings) as client:
        got = await trail(client, admin_key)
    me = audit.cli_actor()
    assert summary(got["data"]) == [
        (me, "key.revoke", None, "refused: no such key"),
        (me, "key.revoke", None, "ok"),
        (me, "key.create", None, "ok"),
    ]
    assert new_id in got["data"][1]["detail"]
    assert new_id in got["data"][2]["detail"]
    listed = {
        line.split()[0]: line
        for line in run_smartcity("api", "list-keys", env=env).stdout.splitlines()
    }
    assert "never used" in listed[new_id]
    assert " used 20" in listed[key_id(admin_key)]  # by the audit request above


def test_smartcity_up_records_one_entry_per_fleet_registration(registry_url: str) -> None:
    settings = UpSettings(streetlights=3, bins=2, chargers=1, fleet="airquality=4")
    assert prepare_registry(registry_url, settings) == 10
    assert prepare_registry(registry_url, settings) == 10
    with registry_session(registry_url) as session:
        entries = session.execute(text("SELECT actor, action, device_id, outcome, detail "
                                       "FROM audit_log ORDER BY id")).all()  # fmt: skip
    expected = (audit.cli_actor(), "device.register_fleet", None, "ok",
                '{"airquality": 4, "evcharger": 1, "streetlight": 3, "wastebin": 2}')  # fmt: skip
    assert [tuple(e) for e in entries] == [expected, expected]


async def test_filters_and_pages(client: httpx.AsyncClient, write_key: str, admin_key: str) -> None:
    writer = {"X-API-Key": write_key}
    for n in range(3):
        body = {**BIN, "device_id": f"wb-f{n}"}
        assert (await client.post("/v1/devices", json=body, headers=writer)).status_code == 201
    r = await client.patch("/v1/devices/wb-f1", json={"name": "Via Po"}, headers=writer)
    assert r.status_code == 200
    everything = (await trail(client, admin_key))["data"]
    assert len(everything) == 4

    got = await trail(client, admin_key, device_id="wb-f1")
    assert [e["action"] for e in got["data"]] == ["device.update", "device.create"]
    got = await trail(client, admin_key, action="device.create")
    assert [e["device_id"] for e in got["data"]] == ["wb-f2", "wb-f1", "wb-f0"]
    assert (await trail(client, admin_key, actor=f"key:{key_id(write_key)}"))["count"] == 4
    assert (await trail(client, admin_key, actor="cli:nobody"))["count"] == 0
    page = await trail(client, admin_key, limit=2, offset=1)
    assert (page["count"], page["data"]) == (4, everything[1:3])
    # since is inclusive, until exclusive: the third entry's time splits them
    cut = everything[1]["at"]
    newer = (await trail(client, admin_key, since=cut))["data"]
    older = (await trail(client, admin_key, until=cut))["data"]
    assert newer + older == everything
    assert newer[-1]["at"] == cut
    naive = cut.replace("Z", "").replace("+00:00", "")  # no offset: taken as UTC
    assert (await trail(client, admin_key, since=naive))["data"] == newer


@pytest.mark.parametrize(
    "params",
    [
        {"since": "yesterday"},
        {"until": "2026-13-01T00:00:00Z"},
        {"since": "0001-01-01T00:00:00+14:00"},  # would overflow on conversion to UTC
        {"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"},
        {"limit": "0"},
        {"limit": "100000"},
        {"offset": "-1"},
        {"device_id": "../etc"},
        {"action": "x' OR 1=1 --"},
        {"actor": "x" * 121},
        {"format": "xlsx"},
    ],
)
async def test_bad_parameters_are_422_problems(
    client: httpx.AsyncClient, admin_key: str, params: dict[str, str]
) -> None:
    r = await client.get("/v1/audit", params=params, headers={"X-API-Key": admin_key})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["errors"]


async def test_csv_export_parses_and_defuses_formulas(
    client: httpx.AsyncClient, settings: ApiSettings, write_key: str, admin_key: str
) -> None:
    assert (
        await client.post("/v1/devices", json=BIN, headers={"X-API-Key": write_key})
    ).status_code == 201
    hostile = ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", "\t=1"]
    with registry_session(settings.registry_url) as session:
        for cell in hostile:  # free text another component might record (a command's reason)
            audit.record(session, actor=cell, action="command", outcome=cell, detail=cell)
        session.commit()
    admin = {"X-API-Key": admin_key}
    by_param = await client.get("/v1/audit", params={"format": "csv"}, headers=admin)
    by_accept = await client.get("/v1/audit", headers={**admin, "Accept": "text/csv"})
    for r in (by_param, by_accept):
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/csv; charset=utf-8"
        assert r.headers["x-total-count"] == "6"
    assert by_param.text == by_accept.text
    rows = list(csv.DictReader(io.StringIO(by_param.text)))
    assert list(rows[0]) == ["id", "at", "actor", "action", "device_id", "outcome", "detail"]
    assert [r["action"] for r in rows] == ["command"] * 5 + ["device.create"]
    for row, cell in zip(rows, reversed(hostile), strict=False):
        assert row["actor"] == row["outcome"] == row["detail"] == f"'{cell}"
    last = rows[-1]
    assert (last["device_id"], last["outcome"]) == ("wb-a1", "ok")
    assert last["actor"] == f"key:{key_id(write_key)}"
    json_wins = await client.get(
        "/v1/audit", params={"format": "json"}, headers={**admin, "Accept": "text/csv"}
    )
    assert json_wins.json()["count"] == 6


async def test_only_admins_read_it_and_nobody_changes_it(
    client: httpx.AsyncClient, settings: ApiSettings, admin_key: str
) -> None:
    assert (await client.get("/v1/audit")).status_code == 401
    for scope in ("read", "write"):
        r = await client.get("/v1/audit", headers={"X-API-Key": make_key(settings, scope)})
        assert (r.status_code, r.headers["content-type"]) == (403, PROBLEM)
    admin = {"X-API-Key": admin_key}
    for method in ("PUT", "PATCH", "DELETE", "POST"):
        r = await client.request(method, "/v1/audit", headers=admin, json={})
        assert (r.status_code, r.headers["content-type"]) == (405, PROBLEM), method


async def test_a_key_s_last_use_is_kept(
    client: httpx.AsyncClient, settings: ApiSettings, admin_key: str
) -> None:
    admin = {"X-API-Key": admin_key}
    read_key = make_key(settings, "read")

    async def last_used() -> str | None:
        keys = (await client.get("/v1/keys", headers=admin)).json()
        return next(k["last_used_at"] for k in keys if k["key_id"] == key_id(read_key))

    assert await last_used() is None
    assert (await client.get("/v1/devices", headers={"X-API-Key": read_key})).status_code == 200
    assert (await last_used()) is not None


def test_last_use_is_written_at_most_once_a_minute_per_key(
    settings: ApiSettings, admin_key: str
) -> None:
    engine = make_engine(settings.registry_url)
    wanted = key_id(admin_key)

    def stored() -> object:
        with engine.begin() as conn:
            return conn.scalar(select(ApiKey.last_used_at).where(ApiKey.key_id == wanted))

    def forget() -> None:
        with engine.begin() as conn:
            conn.execute(update(ApiKey).values(last_used_at=None))

    try:
        keys = KeyStore(engine)
        assert keys.verify(admin_key) is not None
        assert stored() is not None
        forget()
        assert keys.verify(admin_key) is not None  # used again within the minute: no write
        assert stored() is None
        eager = KeyStore(engine, used_every=0)
        assert eager.verify(admin_key) is not None
        assert stored() is not None
    finally:
        engine.dispose()


async def test_a_registry_from_before_last_use_gains_the_column(
    settings: ApiSettings, admin_key: str
) -> None:
    engine = make_engine(settings.registry_url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE api_keys DROP COLUMN last_used_at"))
    assert "last_used_at" not in {c["name"] for c in inspect(engine).get_columns("api_keys")}
    engine.dispose()
    async with serve(settings) as client:  # make_engine adds it back
        keys = (await client.get("/v1/keys", headers={"X-API-Key": admin_key})).json()
    assert [k["last_used_at"] is not None for k in keys] == [True]


async def test_the_bootstrap_admin_key_is_recorded_when_first_made(settings: ApiSettings) -> None:
    secret = "correct horse battery staple, thirty-two+"
    with_key = settings.model_copy(update={"admin_key": SecretStr(secret)})
    for _start in range(2):  # ensured at every start, created at the first
        async with serve(with_key) as client:
            got = await trail(client, secret)
    assert summary(got["data"]) == [(audit.cli_actor(), "key.create", None, "ok")]
    assert '"name": "bootstrap admin"' in got["data"][0]["detail"]
