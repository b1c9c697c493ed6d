"""``/v1/devices/{id}/credentials`` (admin scope) on a real broker, on both registry backends:
a registered device gets its broker login once, rotates it, loses it at once on revocation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from api.settings import ApiSettings
from smartcity import broker_accounts, dynsec
from smartcity.broker_accounts import BrokerAccountError
from smartcity.registry.models import AuditEntry

from ..conftest import AuthBroker
from ..test_broker_accounts import Client
from .conftest import ON_EVERY_REGISTRY_BACKEND, make_key, registry_session, serve

pytestmark = [ON_EVERY_REGISTRY_BACKEND, pytest.mark.servers]
DEVICE = {"device_id": "sl-api1", "device_type": "streetlight", "zone": "Centro",
          "lat": 45.1335, "lon": 10.0245}  # fmt: skip
URL = "/v1/devices/sl-api1/credentials"


@pytest.fixture
def cred_settings(auth_broker: AuthBroker, registry_url: str, tmp_path: Path) -> ApiSettings:
    admin_file = tmp_path / "admin-password"
    dynsec.write_secret(admin_file, auth_broker.passwords["smartcity-admin"])
    return ApiSettings(
        influx_url="http://127.0.0.1:9",  # never asked: these routes use no time series
        registry_url=registry_url,
        mqtt_url=auth_broker.broker.url,
        city=auth_broker.city,
        broker_admin_password_file=admin_file,
        rate_limit=100_000,
    )


@pytest.fixture
async def api(cred_settings: ApiSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(cred_settings) as client:
        yield client


def key(settings: ApiSettings, scope: str) -> dict[str, str]:
    return {"X-API-Key": make_key(settings, scope)}


def login(auth: AuthBroker, user: str, password: str) -> Client:
    return Client(auth, user, user, password)


def refused(auth: AuthBroker, user: str, password: str) -> bool:
    client = login(auth, user, password)
    client.close()
    return str(client.connack) == "Not authorized"


async def test_credentials_are_made_once_rotated_and_revoked_at_once(
    api: httpx.AsyncClient, cred_settings: ApiSettings, auth_broker: AuthBroker
) -> None:
    auth, admin = auth_broker, key(cred_settings, "admin")
    assert (await api.post(URL, headers=admin)).status_code == 404  # not registered yet
    r = await api.post("/v1/devices", json=DEVICE, headers=key(cred_settings, "write"))
    assert r.status_code == 201, r.text

    made = await api.post(URL, headers=admin)
    assert made.status_code == 201, made.text
    assert made.headers["cache-control"] == "no-store"
    body = made.json()
    assert (body["username"], body["client_id"], body["city"]) == ("sl-api1", "sl-api1", auth.city)
    first = body["password"]

    again = await api.post(URL, headers=admin)
    assert again.status_code == 409
    assert "already has a broker account" in again.json()["detail"]
    assert not refused(auth, "sl-api1", first)  # the 409 changed nothing

    rotated = await api.post(URL, params={"rotate": "true"}, headers=admin)
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()["password"]
    assert refused(auth, "sl-api1", first)
    device = login(auth, "sl-api1", second)
    try:
        assert not device.connack.is_failure
        gone = await api.delete(URL, headers=admin)
        assert gone.status_code == 204, gone.text
        assert device.disconnected.wait(2), "a revoked device stays connected"
    finally:
        device.close()
    assert refused(auth, "sl-api1", second)
    shown = (await api.get("/v1/devices/sl-api1")).json()
    assert shown["revoked_at"] is not None
    for attempt in (api.post(URL, headers=admin), api.post(URL, params={"rotate": "true"},
                                                           headers=admin)):  # fmt: skip
        answer = await attempt
        assert answer.status_code == 409
        assert "revoked" in answer.json()["detail"]
    with registry_session(cred_settings.registry_url) as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.device_id == "sl-api1").order_by(AuditEntry.id)
        )
        rows = [(e.action, e.outcome.split(":")[0], e.actor[:4]) for e in entries]
        texts = " ".join(e.detail + e.outcome for e in session.scalars(select(AuditEntry)))
    assert rows == [
        ("device.provision", "refused", "key:"),  # not registered yet: 404
        ("device.create", "ok", "key:"),  # registered through the API
        ("device.provision", "ok", "key:"), ("device.provision", "refused", "key:"),
        ("device.rotate", "ok", "key:"), ("device.revoke", "ok", "key:"),
        ("device.provision", "refused", "key:"), ("device.rotate", "refused", "key:"),
    ]  # fmt: skip
    assert first not in texts
    assert second not in texts


async def test_unknown_ids_are_404_and_non_admins_403(
    api: httpx.AsyncClient, cred_settings: ApiSettings
) -> None:
    admin = key(cred_settings, "admin")
    for method in ("POST", "DELETE"):
        unknown = await api.request(method, "/v1/devices/sl-nope/credentials", headers=admin)
        assert unknown.status_code == 404, unknown.text
        assert "'sl-nope' is not in the registry" in unknown.json()["detail"]
        for scope in ("read", "write"):
            r = await api.request(method, URL, headers=key(cred_settings, scope))
            assert r.status_code == 403, (method, scope)
        assert (await api.request(method, URL)).status_code == 401


async def test_without_the_broker_admin_nothing_changes(
    cred_settings: ApiSettings, auth_broker: AuthBroker, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong-admin"
    dynsec.write_secret(wrong, "wrong")
    for settings, status, says in (
        (cred_settings.model_copy(update={"broker_admin_password_file": tmp_path / "no"}), 503,
         "cannot read the broker admin's password"),
        (cred_settings.model_copy(update={"broker_admin_password_file": wrong}), 503,
         "refused the login"),
    ):  # fmt: skip
        async with serve(settings) as api:
            r = await api.post("/v1/devices", json=DEVICE, headers=key(settings, "write"))
            assert r.status_code in (201, 409)
            failed = await api.post(URL, headers=key(settings, "admin"))
            assert failed.status_code == status, failed.text
            assert says in failed.json()["detail"]
            assert (await api.get("/v1/devices/sl-api1")).json()["revoked_at"] is None
            revoke = await api.delete(URL, headers=key(settings, "admin"))
            assert revoke.status_code == status
            assert (await api.get("/v1/devices/sl-api1")).json()["revoked_at"] is None
    with pytest.raises(BrokerAccountError, match="not found"):
        broker_accounts.get_client(auth_broker.admin, "sl-api1")
