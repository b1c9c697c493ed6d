"""Keys (stored hashed, scoped, revocable), rate limiting and problem+json errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from api.settings import ApiSettings
from smartcity.registry.db import make_engine
from smartcity.registry.models import ApiKey
from smartcity.settings import SettingsError

from ..conftest import run_smartcity
from .conftest import (
    ON_EVERY_REGISTRY_BACKEND,
    CityData,
    api_process,
    api_settings,
    registry_session,
    serve,
)

PROBLEM = "application/problem+json"


def stored_keys(settings: ApiSettings) -> list[ApiKey]:
    with registry_session(settings.registry_url) as session:
        return list(session.scalars(select(ApiKey)).all())


@ON_EVERY_REGISTRY_BACKEND
async def test_admin_manages_keys_and_only_hashes_are_stored(
    client: httpx.AsyncClient, settings: ApiSettings, admin_key: str, write_key: str
) -> None:
    admin = {"X-API-Key": admin_key}
    r = await client.post("/v1/keys", json={"name": "AEM", "scope": "write"}, headers=admin)
    assert r.status_code == 201
    created = r.json()
    key, key_id = created["key"], created["key_id"]
    assert key.startswith(f"sck_{key_id}_")
    secret = key.split("_", 2)[2]
    for row in stored_keys(settings):
        assert secret not in (row.secret_sha256, row.key_id, row.name)
    row = next(k for k in stored_keys(settings) if k.key_id == key_id)
    assert row.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()
    listed = (await client.get("/v1/keys", headers=admin)).json()
    assert {k["key_id"] for k in listed} == {k.key_id for k in stored_keys(settings)}
    assert all("key" not in k for k in listed)
    device = {"device_id": "sl-k", "device_type": "streetlight", "zone": "Po", "lat": 45.12,
              "lon": 10.02}  # fmt: skip
    assert (
        await client.post("/v1/devices", json=device, headers={"X-API-Key": key})
    ).status_code == 201
    assert (await client.delete(f"/v1/keys/{key_id}", headers=admin)).status_code == 204
    r = await client.delete("/v1/devices/sl-k", headers={"X-API-Key": key})
    assert r.status_code == 401  # revoked at once
    assert (await client.delete(f"/v1/keys/{'0' * 12}", headers=admin)).status_code == 404
    # a write key cannot manage keys; no key is 401
    assert (await client.get("/v1/keys", headers={"X-API-Key": write_key})).status_code == 403
    assert (await client.get("/v1/keys")).status_code == 401
    r = await client.post("/v1/keys", json={"name": "x", "scope": "root"}, headers=admin)
    assert r.status_code == 422


async def test_bootstrap_admin_key_from_settings(city_data: CityData, tmp_path: Path) -> None:
    secret = "correct horse battery staple, thirty-two+"
    settings = api_settings(city_data, tmp_path, admin_key=secret)
    async with serve(settings) as client:
        r = await client.get("/v1/keys", headers={"X-API-Key": secret})
        assert r.status_code == 200
        assert [k["scope"] for k in r.json()] == ["admin"]
    with pytest.raises(ValueError, match="at least 32 characters"):
        api_settings(city_data, tmp_path, admin_key="changeme")


async def test_rate_limit_answers_429_with_retry_after(city_data: CityData, tmp_path: Path) -> None:
    settings = api_settings(city_data, tmp_path, rate_limit=5, rate_limit_keyed=8)
    async with serve(settings) as client:
        codes = [(await client.get("/v1/opendata/datasets")).status_code for _ in range(7)]
        assert codes == [200] * 5 + [429] * 2
        r = await client.get("/v1/opendata/datasets")
        assert r.headers["content-type"] == PROBLEM
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["status"] == 429
        # a key is its own client with its own, higher limit
        from .conftest import make_key

        key = {"X-API-Key": make_key(settings, "read")}
        codes = [(await client.get("/v1/opendata/datasets", headers=key)).status_code
                 for _ in range(9)]  # fmt: skip
        assert codes == [200] * 8 + [429]
        # static assets are not counted
        assert (await client.get("/static/bootstrap-italia/css/nope.css")).status_code == 404


def limited_until_429(url: str, headers: dict[str, str] | None = None) -> None:
    """Spend this client's whole bucket (one token a minute): the next request is refused."""
    codes = [httpx.get(url, headers=headers).status_code for _ in range(3)]
    assert 429 in codes, codes


def test_a_spoofed_forwarded_for_does_not_escape_the_rate_limit(
    city_data: CityData, tmp_path: Path
) -> None:
    """Through uvicorn as deployed: a loopback client's X-Forwarded-For is not believed."""
    settings = api_settings(city_data, tmp_path)
    with api_process(settings, tmp_path, {"SMARTCITY_API_RATE_LIMIT": "1"}) as url:
        datasets = f"{url}/v1/opendata/datasets"
        limited_until_429(datasets)
        for spoofed in ("203.0.113.7", "203.0.113.8, 198.51.100.1"):
            r = httpx.get(datasets, headers={"X-Forwarded-For": spoofed})
            assert r.status_code == 429, spoofed


def test_a_trusted_proxy_names_the_client(city_data: CityData, tmp_path: Path) -> None:
    settings = api_settings(city_data, tmp_path)
    env = {
        "SMARTCITY_API_RATE_LIMIT": "1",
        "SMARTCITY_API_TRUSTED_PROXIES": "10.9.0.0/16, 127.0.0.1",
    }
    with api_process(settings, tmp_path, env) as url:
        datasets = f"{url}/v1/opendata/datasets"
        limited_until_429(datasets)
        client = {"X-Forwarded-For": "203.0.113.7"}
        assert httpx.get(datasets, headers=client).status_code == 200  # its own bucket
        assert httpx.get(datasets, headers=client).status_code == 429
    with pytest.raises(ValueError, match=r"'proxy\.example' is not an IP address"):
        api_settings(city_data, tmp_path, trusted_proxies="127.0.0.1,proxy.example")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/nothing-here", 404),
        ("DELETE", "/v1/services", 405),
        ("GET", "/v1/devices/sl-1/series", 422),
        ("GET", "/v1/devices/sl-1/latest?x=1", 404),
    ],
)
async def test_every_error_is_a_problem_document(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    r = await client.request(method, path)
    assert r.status_code == status
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["title"]
    assert body["instance"] == path.split("?")[0]


async def test_influxdb_down_is_a_503_problem(city_data: CityData, tmp_path: Path) -> None:
    from stack.servers import free_port

    settings = api_settings(city_data, tmp_path, influx_url=f"http://127.0.0.1:{free_port()}")
    async with serve(settings) as client:
        r = await client.get("/v1/services")
        assert r.status_code == 503
        assert r.headers["retry-after"] == "5"
        assert r.headers["content-type"] == PROBLEM
        r = await client.get("/v1/health")
        assert r.status_code == 503
        assert r.json()["influxdb"] is False
        assert r.json()["registry"] is True


def test_keys_from_the_command_line(tmp_path: Path) -> None:
    import os

    env = {**os.environ, "SMARTCITY_API_REGISTRY_URL": f"sqlite:///{tmp_path}/r.db"}
    made = run_smartcity("api", "create-key", "--scope", "write", "--name", "AEM", env=env)
    assert made.returncode == 0, made.stderr
    key = made.stdout.splitlines()[0]
    key_id = key.split("_")[1]
    listed = run_smartcity("api", "list-keys", env=env).stdout
    assert key_id in listed
    assert "write" in listed
    assert "active" in listed
    assert key not in listed
    assert run_smartcity("api", "revoke-key", key_id, env=env).returncode == 0
    assert "revoked" in run_smartcity("api", "list-keys", env=env).stdout
    missing = run_smartcity("api", "revoke-key", "0" * 12, env=env)
    assert missing.returncode == 1
    assert "list-keys" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = run_smartcity("api", "create-key", "--scope", "root", env=env)
    assert bad.returncode == 2


def test_settings_are_checked_before_anything_starts(tmp_path: Path) -> None:
    import os

    env = {**os.environ, "SMARTCITY_API_REGISTRY_URL": "mysql://x"}
    r = run_smartcity("api", "--port", "8123", env=env)
    assert r.returncode == 2
    assert "registry_url" in r.stderr
    assert "Traceback" not in r.stderr
    with pytest.raises(SettingsError, match="driver is missing or unknown"):
        make_engine("sqlite+nope:///")
    with pytest.raises(SettingsError, match="not a database URL"):
        make_engine("::nonsense::")
