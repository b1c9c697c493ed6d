"""Commands from operators, end to end on real servers (issue 12, section 3).

The broker has the platform's accounts (the API publishes as ``api``, the ingester reads
``cmd_result`` as ``ingest``), InfluxDB and the ingester are real, and the device is a real edge
agent (``smartcity edge run --driver simulated``) logged in as itself.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.app import create_app
from api.registry import crud
from api.schemas.devices import DeviceCreate
from api.security import create_key
from api.settings import ApiSettings
from smartcity.registry.db import make_engine
from smartcity.registry.models import AuditEntry
from stack.servers import free_port

from .conftest import AuthBroker, Influx, IngesterProcess, run_smartcity, smartcity_env
from .test_edge import AgentProcess

CHARGER, SILENT = "ev-cmd", "sl-silent"
#: Short, so a test sees a command expire; the API's default is 120 s.
TIMEOUT_S = 3.0


@dataclass
class Platform:
    auth: AuthBroker
    influx: Influx
    registry_url: str
    settings: ApiSettings
    keys: dict[str, str]
    env: dict[str, str]


@pytest.fixture
def platform(
    auth_broker: AuthBroker, influx: Influx, city: str, tmp_path: Path
) -> Iterator[Platform]:
    """Registry with a charger (a running edge agent) and a silent street light; the ingester."""
    registry_url = f"sqlite:///{tmp_path}/registry.db"
    engine = make_engine(registry_url)
    keys = {}
    with Session(engine) as session:
        for device_id, kind in ((CHARGER, "evcharger"), (SILENT, "streetlight")):
            crud.create_device(
                session,
                DeviceCreate(device_id=device_id, device_type=kind, zone="Centro", lat=45.13,
                             lon=10.02),
            )  # fmt: skip
        for scope in ("read", "operate"):
            keys[scope] = create_key(session, f"{scope} key", scope)[1]
    engine.dispose()
    settings = ApiSettings(
        influx_url=influx.url, influx_db=influx.db, registry_url=registry_url,
        mqtt_url=auth_broker.url("api"), city=city, command_timeout=TIMEOUT_S,
        rate_limit=100_000, rate_limit_keyed=100_000,
    )  # fmt: skip
    env = smartcity_env(auth_broker.url("ingest"), influx, city)
    ingester = IngesterProcess(
        {**env, "SMARTCITY_INGEST_REGISTRY_URL": registry_url},
        tmp_path / "ingest.log",
        "--spool-dir", str(tmp_path / "spool"), "--metrics-port", "0",
    ).start().wait_subscribed()  # fmt: skip
    try:
        yield Platform(auth_broker, influx, registry_url, settings, keys, env)
    finally:
        ingester.stop()


@pytest.fixture
def charger(platform: Platform, tmp_path: Path, city: str) -> Iterator[AgentProcess]:
    password = platform.auth.add_device("evcharger", CHARGER)
    agent = AgentProcess(
        smartcity_env(platform.auth.broker.url, platform.influx, city), tmp_path, CHARGER,
        "--device-type", "evcharger", "--username", CHARGER, "--password", password,
    ).start()  # fmt: skip
    agent.wait_log("connected to broker")
    yield agent
    agent.stop()


@pytest.fixture
async def api(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(platform.settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client


async def send(
    api: httpx.AsyncClient, key: str, device_id: str, name: str, **args: object
) -> httpx.Response:
    return await api.post(
        f"/v1/devices/{device_id}/commands",
        json={"name": name, "args": args},
        headers={"X-API-Key": key},
    )


async def wait_state(
    api: httpx.AsyncClient,
    key: str,
    device_id: str,
    command_id: str,
    until: tuple[str, ...] = ("applied", "rejected"),
    within: float = 60,
) -> dict[str, Any]:
    """The command once its state is one of ``until`` (an answer later than the timeout still
    counts, so ``expired`` may turn into ``applied``: a busy fleet answers late)."""
    deadline = time.monotonic() + within
    while True:
        resp = await api.get(f"/v1/devices/{device_id}/commands", headers={"X-API-Key": key})
        assert resp.status_code == 200, resp.text
        mine: list[dict[str, Any]] = [
            c for c in resp.json()["data"] if c["command_id"] == command_id
        ]
        assert len(mine) == 1, resp.json()
        if mine[0]["state"] in until:
            return mine[0]
        assert time.monotonic() < deadline, f"not {until}: {mine[0]}"
        await asyncio.sleep(0.2)


def audit_entries(platform: Platform) -> list[AuditEntry]:
    engine = make_engine(platform.registry_url)
    with Session(engine) as session:
        rows = list(session.scalars(select(AuditEntry).where(AuditEntry.action == "command")))
    engine.dispose()
    return rows


class Watcher:
    """Every message on the city's command topics, as the observer account sees them."""

    def __init__(self, auth: AuthBroker) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.subscribed = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id="observer", protocol=paho.MQTTv5
        )
        self.client.username_pw_set("observer", auth.passwords["observer"])
        self.client.on_message = lambda c, u, m: self.messages.append(
            (m.topic, json.loads(m.payload))
        )
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.connect(auth.broker.host, auth.broker.port)
        self.client.loop_start()
        self.client.subscribe(f"smartcity/v1/{auth.city}/+/+/cmd", qos=1)
        assert self.subscribed.wait(10)

    def wait_for(self, command_id: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not any(body.get("id") == command_id for _, body in self.messages):
            assert time.monotonic() < deadline, f"{command_id} never published: {self.messages}"
            time.sleep(0.05)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def test_a_command_is_applied_a_refused_argument_rejected_and_each_audited_once(
    platform: Platform, charger: AgentProcess, api: httpx.AsyncClient
) -> None:
    key = platform.keys["operate"]
    resp = await send(api, key, CHARGER, "setConnector", connectorId=1, enabled=False)
    assert resp.status_code == 202, resp.text
    off = resp.json()
    assert off["state"] == "sent"
    assert off["args"] == {"connectorId": 1, "enabled": False}
    assert off["actor"].startswith("key:")
    # valid for the contract (connectors 1-8), but this station has fewer: the device refuses
    resp = await send(api, key, CHARGER, "setConnector", connectorId=8, enabled=False)
    assert resp.status_code == 202, resp.text
    too_far = resp.json()

    applied = await wait_state(api, key, CHARGER, off["command_id"])
    assert applied["state"] == "applied", applied
    assert applied["reason"] is None
    # stamped before publishing: an answer within milliseconds never precedes it
    sent_at, answered_at = (datetime.fromisoformat(applied[k]) for k in ("sent_at", "answered_at"))
    assert sent_at <= answered_at
    rejected = await wait_state(api, key, CHARGER, too_far["command_id"])
    assert rejected["state"] == "rejected", rejected
    assert "connectorId 8: this station has connectors 1-" in rejected["reason"]

    # the disabled connector reports Unavailable from then on
    deadline = time.monotonic() + 30
    while True:
        rows = platform.influx.query(
            'SELECT last("status") FROM "evcharger_connector" WHERE "device_id" = $d '
            "AND \"connector_id\" = '1'",
            d=CHARGER,
        )
        if rows and rows[0]["last"] == "Unavailable":
            break
        assert time.monotonic() < deadline, rows
        await asyncio.sleep(0.2)

    by_command: dict[str, list[AuditEntry]] = {}
    for entry in audit_entries(platform):
        detail = json.loads(entry.detail)
        by_command.setdefault(detail["command_id"], []).append(entry)
    assert sorted(by_command) == sorted([off["command_id"], too_far["command_id"]])
    for entries in by_command.values():
        assert len(entries) == 1
        assert entries[0].outcome == "sent"
        assert entries[0].device_id == CHARGER
        assert entries[0].actor == off["actor"]


async def test_a_command_to_a_silent_device_expires(
    platform: Platform, api: httpx.AsyncClient
) -> None:
    key = platform.keys["operate"]
    resp = await send(api, key, SILENT, "dim", level=0.4)
    assert resp.status_code == 202, resp.text
    sent = resp.json()
    expired = await wait_state(api, key, SILENT, sent["command_id"], ("expired",))
    assert expired["state"] == "expired"
    assert expired["answered_at"] is None


async def test_unknown_commands_and_bad_arguments_are_422_and_nothing_is_published(
    platform: Platform, api: httpx.AsyncClient
) -> None:
    key = platform.keys["operate"]
    watcher = Watcher(platform.auth)
    try:
        cases: list[tuple[tuple[str], dict[str, Any], str]] = [
            (("explode",), {}, "has no command 'explode'"),
            (("dim",), {"level": 4}, "level"),
            (("dim",), {"level": "0.4"}, "level"),
            (("dim",), {}, "level"),
            (("dim",), {"level": 0.4, "speed": 2}, "speed"),
            (("dim",), {"level": 0.4, "id": "mine"}, "set by the platform"),
        ]
        for (name,), args, said in cases:
            resp = await send(api, key, SILENT, name, **args)
            assert resp.status_code == 422, (name, args, resp.text)
            assert resp.headers["content-type"] == "application/problem+json"
            assert said in resp.json()["detail"], resp.json()
        # a good one after them: the first and only command the broker delivered
        resp = await send(api, key, SILENT, "switch", state="off")
        assert resp.status_code == 202
        marker = resp.json()["command_id"]
        watcher.wait_for(marker)
        assert [body["id"] for _, body in watcher.messages] == [marker]
        assert watcher.messages[0][1] == {"v": 1, "id": marker, "action": "switch", "state": "off"}
    finally:
        watcher.close()
    # the refusals are in the audit trail too, each once, as refused
    outcomes = [e.outcome for e in audit_entries(platform)]
    assert sum(o.startswith("refused: ") for o in outcomes) == len(cases)
    assert outcomes.count("sent") == 1


async def test_sending_needs_the_operate_scope_and_a_registered_device(
    platform: Platform, api: httpx.AsyncClient
) -> None:
    resp = await send(api, platform.keys["read"], SILENT, "dim", level=0.4)
    assert resp.status_code == 403, resp.text
    assert "operate" in resp.json()["detail"]
    resp = await api.post(f"/v1/devices/{SILENT}/commands", json={"name": "dim", "args": {}})
    assert resp.status_code == 401
    resp = await send(api, platform.keys["operate"], "sl-nowhere", "dim", level=0.4)
    assert resp.status_code == 404
    # a read key may see the list, nobody without a key
    listed = await api.get(
        f"/v1/devices/{SILENT}/commands", headers={"X-API-Key": platform.keys["read"]}
    )
    assert listed.status_code == 200
    assert listed.json()["data"] == []
    assert (await api.get(f"/v1/devices/{SILENT}/commands")).status_code == 401
    assert audit_entries(platform) == []


def test_the_cli_sends_a_command_and_waits_for_its_answer(
    platform: Platform, charger: AgentProcess
) -> None:
    env = {
        **platform.env,
        "SMARTCITY_MQTT_URL": platform.auth.url("api"),
        "SMARTCITY_API_REGISTRY_URL": platform.registry_url,
    }
    out = run_smartcity(
        "command", CHARGER, "setConnector", "connectorId=1", "enabled=false", "--wait", "30",
        env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    command_id = out.stdout.split()[0]
    assert f"{command_id} applied" in out.stdout
    bad = run_smartcity("command", CHARGER, "setConnector", "connectorId=nine", env=env)
    assert bad.returncode != 0
    assert "nothing was sent" in bad.stderr, bad.stderr
    (entry,) = [e for e in audit_entries(platform) if e.outcome == "sent"]
    assert entry.actor.startswith("cli:")
    assert json.loads(entry.detail)["command_id"] == command_id


@pytest.fixture
def fleet(platform: Platform, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``smartcity simulate`` with one charger (ev-00001, registered), logged in as the
    simulator account, replaying 30 days as fast as it can, then live."""
    engine = make_engine(platform.registry_url)
    with Session(engine) as session:
        crud.create_device(
            session,
            DeviceCreate(device_id="ev-00001", device_type="evcharger", zone="Centro",
                         lat=45.13, lon=10.02),
        )  # fmt: skip
    engine.dispose()
    start = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    with (tmp_path / "simulate.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "smartcity", "simulate", "--streetlights", "0", "--bins", "0",
             "--chargers", "1", "--fleet", "airquality=0", "--start", start, "--speed", "0",
             "--no-progress"],
            env={**platform.env, "SMARTCITY_MQTT_URL": platform.auth.url("simulator")},
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    yield proc
    proc.terminate()
    assert proc.wait(60) == 0, (tmp_path / "simulate.log").read_text()


async def test_the_simulated_fleet_answers_commands_as_edge_agents_do(
    platform: Platform, api: httpx.AsyncClient, fleet: subprocess.Popen[bytes]
) -> None:
    """``smartcity up``'s fleet, logged in as the simulator account: a disabled connector
    reports Unavailable from then on, and a connector it does not have is refused."""
    key = platform.keys["operate"]
    # a stored reading was published after the command subscription was made
    assert platform.influx.wait_for_count("evcharger", 1, timeout=60) >= 1
    resp = await send(api, key, "ev-00001", "setConnector", connectorId=1, enabled=False)
    assert resp.status_code == 202, resp.text
    applied = await wait_state(api, key, "ev-00001", resp.json()["command_id"])
    assert applied["state"] == "applied", applied
    resp = await send(api, key, "ev-00001", "setConnector", connectorId=8, enabled=True)
    rejected = await wait_state(api, key, "ev-00001", resp.json()["command_id"])
    assert rejected["state"] == "rejected", rejected
    assert "this station has connectors 1-" in rejected["reason"]
    deadline = time.monotonic() + 90  # the fleet reports every 60 s once caught up
    while True:
        rows = platform.influx.query(
            'SELECT last("status") FROM "evcharger_connector" WHERE "device_id" = $d '
            "AND \"connector_id\" = '1'",
            d="ev-00001",
        )
        if rows and rows[0]["last"] == "Unavailable":
            break
        assert time.monotonic() < deadline, rows
        await asyncio.sleep(0.2)


async def test_an_unreachable_broker_is_503_and_audited_as_failed(platform: Platform) -> None:
    settings = platform.settings.model_copy(
        update={"mqtt_url": f"mqtt://api:x@127.0.0.1:{free_port()}"}
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            resp = await send(client, platform.keys["operate"], SILENT, "dim", level=0.4)
            assert resp.status_code == 503, resp.text
            assert "cannot reach the MQTT broker" in resp.json()["detail"]
            listed = await client.get(
                f"/v1/devices/{SILENT}/commands", headers={"X-API-Key": platform.keys["read"]}
            )
            assert listed.json()["data"] == []
    (entry,) = audit_entries(platform)
    assert entry.outcome.startswith("failed: cannot reach the MQTT broker")
