"""``smartcity ocpp``, the OCPP 1.6J central system, against real servers: a real Mosquitto with
the platform's accounts (the gateway logs in as ``ocpp``), a real InfluxDB and the real
ingester; the chargers are the ``ocpp`` package's charge point side (simulators.ocpp)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from ocpp.v16 import call
from sqlalchemy.orm import Session
from websockets.exceptions import InvalidStatus

from api.settings import ApiSettings
from simulators.ocpp import SimulatedChargePoint, ocpp_time, open_charger
from smartcity import provisioning
from smartcity.contract import topic
from smartcity.registry.db import make_engine
from smartcity.registry.models import Device
from stack.servers import free_port
from tests.api.conftest import api_process
from tests.conftest import AuthBroker, Influx, IngesterProcess, run_smartcity, smartcity_env

pytestmark = pytest.mark.servers
CHARGERS = ("ev-o1", "ev-o2", "ev-o3")


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path
    passwords: dict[str, str]
    registry: str

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_gateway(
    env: dict[str, str], tmp: Path, registry: str, port: int
) -> subprocess.Popen[bytes]:
    log_path = tmp / "ocpp.log"
    before = log_path.read_text().count("listening") if log_path.exists() else 0
    log = log_path.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "smartcity", "ocpp", "--host", "127.0.0.1", "--port", str(port),
         "--registry-url", registry, "--state-dir", str(tmp / "ocpp-state"),
         "--heartbeat-interval", "2", "--offline-after", "2", "--command-timeout", "3"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    log.close()
    deadline = time.monotonic() + 30
    while log_path.read_text().count("OCPP central system listening") == before:
        assert proc.poll() is None, (tmp / "ocpp.log").read_text()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return proc


@pytest.fixture
def gateway(
    auth_broker: AuthBroker, influxd: object, influx: Influx, city: str, tmp_path: Path
) -> Iterator[Gateway]:
    registry = f"sqlite:///{tmp_path}/registry.db"
    engine = make_engine(registry)
    passwords = {}
    with Session(engine, expire_on_commit=False) as session:
        for cid in CHARGERS:
            new = provisioning.NewDevice("evcharger", cid, "Centro", 45.13, 10.02)
            creds = provisioning.provision(session, auth_broker.admin, city, new, "test")
            assert creds.ocpp_password is not None
            passwords[cid] = creds.ocpp_password
    # only a salted hash is kept
    with Session(engine) as session:
        stored = session.get(Device, "ev-o1")
        assert stored is not None
        assert stored.ocpp_password_hash is not None
        assert passwords["ev-o1"] not in stored.ocpp_password_hash
    engine.dispose()
    env = smartcity_env(auth_broker.url("ocpp"), influx, city)
    port = free_port()
    proc = start_gateway(env, tmp_path, registry, port)
    gw = Gateway(proc, f"ws://127.0.0.1:{port}/ocpp", tmp_path / "ocpp.log", passwords, registry)
    yield gw
    gw.proc.terminate()  # a test may have restarted it
    gw.proc.wait(30)


@pytest.fixture
def ingesting(auth_broker: AuthBroker, influx: Influx, city: str, tmp_path: Path) -> Iterator[None]:
    proc = IngesterProcess(
        smartcity_env(auth_broker.url("ingest"), influx, city), tmp_path / "ingest.log",
        "--client-id", "smartcity-ingest", "--spool-dir", str(tmp_path / "spool"),
        "--metrics-port", "0",
    ).start()  # fmt: skip
    proc.wait_subscribed()
    yield
    proc.stop()


async def charger(gw: Gateway, cid: str) -> tuple[SimulatedChargePoint, asyncio.Task[None]]:
    ws = await open_charger(gw.url, cid, gw.passwords[cid])
    point = SimulatedChargePoint(cid, ws)
    return point, asyncio.ensure_future(point.start())


def wait_rows(influx: Influx, q: str, n: int, timeout: float = 30, **params: object) -> list:
    deadline = time.monotonic() + timeout
    rows: list = []
    while time.monotonic() < deadline:
        rows = influx.query(q, **params)
        if len(rows) >= n:
            return rows
        time.sleep(0.2)
    return rows


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A key and a certificate for 127.0.0.1 that only the test trusts."""
    folder.mkdir()
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


def ev_kpis(settings: ApiSettings, workdir: Path) -> dict[str, float]:
    """The EV charging service's live KPIs from a real ``smartcity api``."""
    as_of = {"SMARTCITY_API_AS_OF": datetime.now(UTC).isoformat()}
    with api_process(settings, workdir, as_of) as api:
        services = httpx.get(f"{api}/v1/services", timeout=30).json()["data"]
    ev = next(s for s in services if "sessions_24h" in json.dumps(s))
    return {k["id"]: k["value"] for k in ev["kpis"]}


def at(rows: list, ts: datetime) -> dict:
    """The row stored at ``ts`` (to the second: a reading's seq is added in nanoseconds)."""
    (row,) = [r for r in rows if r["time"].startswith(ts.strftime("%Y-%m-%dT%H:%M:%S"))]
    return row


def meter(ts: datetime, wh: float, w: float, unit: str = "Wh", **extra: str) -> dict:
    return {
        "timestamp": ocpp_time(ts),
        "sampledValue": [
            {"value": str(wh), "unit": unit, "measurand": "Energy.Active.Import.Register", **extra},
            {"value": str(w), "unit": "W", "measurand": "Power.Active.Import"},
            {"value": "16.0", "unit": "A", "measurand": "Current.Import"},
            {"value": "230.5", "unit": "V", "measurand": "Voltage"},
            {"value": "55", "unit": "Percent", "measurand": "SoC"},
        ],
    }


async def test_boot_status_meter_values_and_a_whole_session_land_in_influxdb(
    gateway: Gateway, ingesting: None, influx: Influx, tmp_path: Path
) -> None:
    point, task = await charger(gateway, "ev-o1")
    boot = await point.boot(firmware="fw-1.2.3")
    assert boot.status == "Accepted"
    assert boot.interval == 2
    await point.call(
        call.StatusNotification(connector_id=1, error_code="NoError", status="Available")
    )
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    start = await point.call(
        call.StartTransaction(connector_id=1, id_tag="CARD-SECRET-1", meter_start=1_000_000,
                              timestamp=ocpp_time(t0))
    )  # fmt: skip
    tx = start.transaction_id
    await point.call(call.StatusNotification(
        connector_id=1, error_code="NoError", status="Charging", timestamp=ocpp_time(t0)
    ))  # fmt: skip
    # kWh and Wh registers both become kWh; W becomes kW
    await point.call(call.MeterValues(connector_id=1, transaction_id=tx, meter_value=[
        meter(t0 + timedelta(minutes=10), 1_003_500, 21_000),
        meter(t0 + timedelta(minutes=20), 1007.0, 22_000, unit="kWh"),
    ]))  # fmt: skip
    end = ocpp_time(t0 + timedelta(minutes=30))
    await point.call(call.StopTransaction(
        meter_stop=1_010_000, timestamp=end, transaction_id=tx, reason="EVDisconnected"
    ))  # fmt: skip
    await point.call(call.Heartbeat())
    task.cancel()
    await point.ws.close()

    # a reading per meter value, and one when the status changed once the meter was known
    readings = wait_rows(influx, 'SELECT * FROM "evcharger" WHERE device_id = $d', 3, d="ev-o1")
    assert len(readings) == 3
    at10 = at(readings, t0 + timedelta(minutes=10))
    assert at10["energy"] == pytest.approx(1003.5)
    assert at10["power"] == pytest.approx(21.0)
    at20 = at(readings, t0 + timedelta(minutes=20))
    assert at20["energy"] == pytest.approx(1007.0)
    assert at20["power"] == pytest.approx(22.0)
    assert sorted(r["seq"] for r in readings) == list(range(len(readings)))
    conn = influx.query('SELECT * FROM "evcharger_connector" WHERE device_id = $d', d="ev-o1")
    assert any(c["current"] == 16.0 and c["voltage"] == 230.5 and c["soc"] == 55 for c in conn)
    events = wait_rows(influx, 'SELECT * FROM "evcharger_event" WHERE device_id = $d', 4, d="ev-o1")
    stop = next(e for e in events if e["kind"] == "sessionStop")
    assert stop["energy"] == pytest.approx(10.0)
    assert stop["duration"] == 1800.0
    assert stop["reason"] == "EVDisconnected"
    assert stop["time"].startswith((t0 + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S"))
    started = next(e for e in events if e["kind"] == "sessionStart")
    assert started["time"].startswith(t0.strftime("%Y-%m-%dT%H:%M:%S"))
    assert "CARD-SECRET-1" not in json.dumps(events)
    assert len(started["idTagHash"]) == 32
    statuses = [e for e in events if e["kind"] == "connectorStatus"]
    assert {e["status"] for e in statuses} == {"Available", "Charging"}
    assert all(e["error_code"] == "NoError" for e in statuses)
    status = wait_rows(
        influx, 'SELECT * FROM "device_status" WHERE device_id = $d AND online = 0', 1, d="ev-o1"
    )
    assert status, "a disconnected charger is reported offline"
    online = influx.query(
        'SELECT * FROM "device_status" WHERE device_id = $d AND online = 1', d="ev-o1"
    )
    assert any(s["firmware"] == "fw-1.2.3" for s in online)
    # the API's EV KPIs, computed from what this charger said over OCPP
    settings = ApiSettings(
        influx_url=influx.url, influx_db=influx.db, registry_url=gateway.registry
    )  # fmt: skip
    kpis = await asyncio.to_thread(ev_kpis, settings, tmp_path)
    assert kpis["sessions_24h"] == 1
    assert kpis["energy_delivered_24h"] == pytest.approx(7.0)  # 1000 -> 1007 kWh metered
    engine = make_engine(gateway.registry)
    with Session(engine) as session:
        device = session.get(Device, "ev-o1")
        assert device is not None
        assert (device.charger_vendor, device.charger_model, device.charger_firmware) == (
            "smartcity",
            "simulated",
            "fw-1.2.3",
        )
        assert device.charger_serial == "ev-o1"
    engine.dispose()


def send_command(auth: AuthBroker, city: str, device_id: str, payload: dict) -> None:
    """Publish a command as the API does (over the api account, QoS 1)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="api", protocol=paho.MQTTv5)
    client.username_pw_set("api", auth.passwords["api"])
    client.connect(auth.broker.host, auth.broker.port)
    client.loop_start()
    info = client.publish(topic("evcharger", device_id, "cmd", city), json.dumps(payload), qos=1)
    info.wait_for_publish(10)
    client.loop_stop()
    client.disconnect()


async def test_each_command_round_trip_ends_with_the_chargers_answer(
    gateway: Gateway, auth_broker: AuthBroker, ingesting: None, influx: Influx, city: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    point, task = await charger(gateway, "ev-o2")
    await point.boot()
    point.answers = {"RemoteStopTransaction": "Rejected", "ChangeConfiguration": "RebootRequired",
                     "UnlockConnector": "NotSupported"}  # fmt: skip
    sent = {
        "c-avail": {"action": "setConnector", "connectorId": 1, "enabled": False},
        "c-start": {"action": "remoteStart", "idTag": "CARD9", "connectorId": 1},
        "c-stop": {"action": "remoteStop", "transactionId": 7},
        "c-reset": {"action": "reset", "type": "Soft"},
        "c-unlock": {"action": "unlockConnector", "connectorId": 2},
        "c-trig": {"action": "triggerMessage", "requestedMessage": "StatusNotification"},
        "c-conf": {"action": "changeConfiguration", "key": "MeterValueSampleInterval",
                   "value": "30"},
        "c-get": {"action": "getConfiguration", "keys": ["MeterValueSampleInterval", "Nope"]},
    }  # fmt: skip
    for cid, args in sent.items():
        await asyncio.to_thread(
            send_command, auth_broker, city, "ev-o2", {"v": 1, "id": cid, **args}
        )
    rows = await asyncio.to_thread(
        wait_rows,
        influx,
        'SELECT * FROM "device_command" WHERE device_id = $d',
        len(sent),
        d="ev-o2",
    )
    results = {r["command_id"]: r for r in rows}
    assert set(results) == set(sent)
    assert [a for a, _ in point.received] == [
        "ChangeAvailability", "RemoteStartTransaction", "RemoteStopTransaction", "Reset",
        "UnlockConnector", "TriggerMessage", "ChangeConfiguration", "GetConfiguration",
    ]  # fmt: skip
    assert {c: results[c]["state"] for c in sent} == {
        "c-avail": "applied", "c-start": "applied", "c-stop": "rejected", "c-reset": "applied",
        "c-unlock": "rejected", "c-trig": "applied", "c-conf": "applied", "c-get": "applied",
    }  # fmt: skip
    assert results["c-stop"]["reason"] == "the charger answered Rejected"
    assert results["c-conf"]["reason"] == "RebootRequired"
    got = json.loads(results["c-get"]["reason"])
    assert got["unknownKey"] == ["Nope"]
    assert got["configurationKey"][0]["key"] == "MeterValueSampleInterval"
    # a charger that does not answer: no result, the command expires
    point.silent.add("Reset")
    await asyncio.to_thread(
        send_command, auth_broker, city, "ev-o2", {"v": 1, "id": "c-late", "action": "reset",
                                                     "type": "Hard"}
    )  # fmt: skip
    await asyncio.sleep(4)  # the gateway's --command-timeout is 3 s
    late = influx.query('SELECT * FROM "device_command" WHERE command_id = $c', c="c-late")
    assert late == [], "an unanswered command gets no result (it expires)"
    assert "did not answer a command" in gateway.log()
    # the installer's check sees it booted and connected
    env = {**os.environ, "SMARTCITY_OCPP_REGISTRY_URL": gateway.registry,
           "SMARTCITY_OCPP_STATE_DIR": str(tmp_path / "ocpp-state")}  # fmt: skip
    checked = await asyncio.to_thread(run_smartcity, "edge", "check", "--ocpp", "ev-o2", env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "connected now" in checked.stdout
    assert "smartcity simulated" in checked.stdout
    unknown = await asyncio.to_thread(run_smartcity, "edge", "check", "--ocpp", "ev-zz", env=env)
    assert unknown.returncode == 1
    assert "not a registered charger" in unknown.stdout
    task.cancel()
    await point.ws.close()


async def test_wrong_password_unknown_and_revoked_chargers_are_refused_and_counted(
    gateway: Gateway, auth_broker: AuthBroker, ingesting: None, influx: Influx, city: str
) -> None:
    for cid, password in (("ev-o1", "not-its-password"), ("ev-zz", "whatever"),
                          ("ev-o2", None)):  # fmt: skip
        with pytest.raises(InvalidStatus) as refused:
            await open_charger(gateway.url, cid, password)
        assert refused.value.response.status_code == 401
    # the right password still works
    point, task = await charger(gateway, "ev-o1")
    assert (await point.boot()).status == "Accepted"
    task.cancel()
    await point.ws.close()
    health = await asyncio.to_thread(
        wait_rows, influx, 'SELECT * FROM "device_health" WHERE device_id = $d', 1, d="ev-o1"
    )
    assert "wrong OCPP password (1)" in health[0]["lastError"]
    engine = make_engine(gateway.registry)
    with Session(engine) as session:
        provisioning.revoke(session, auth_broker.admin, "ev-o3", "test")
    engine.dispose()
    with pytest.raises(InvalidStatus):
        await open_charger(gateway.url, "ev-o3", gateway.passwords["ev-o3"])
    assert "reason=revoked" in gateway.log()


async def test_bad_frames_get_a_callerror_and_a_deadletter_and_the_connection_stays_up(
    gateway: Gateway, ingesting: None, influx: Influx
) -> None:
    ws = await open_charger(gateway.url, "ev-o1", gateway.passwords["ev-o1"])
    future = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    frames = {
        "{not json": ("FormationViolation", "-1"),
        '[2,"u2","Foo",{}]': ("NotImplemented", "u2"),
        '[2,"u3","BootNotification",{"chargePointVendor":"x"}]': ("ProtocolError", "u3"),
        '[2,"u4","MeterValues",{"connectorId":1,"meterValue":[{"timestamp":"2026-01-01T00:00:00Z",'
        '"sampledValue":[{"value":"abc"}]}]}]': ("PropertyConstraintViolation", "u4"),
        '[2,"u5","StartTransaction",{"connectorId":1,"idTag":"A","meterStart":0,'
        f'"timestamp":"{future}"}}]': ("PropertyConstraintViolation", "u5"),
        '[2,"u6","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Bogus"}]': (
            "FormationViolation", "u6"),
    }  # fmt: skip
    for frame, (code, unique_id) in frames.items():
        await ws.send(frame)
        answer = json.loads(await ws.recv())
        assert answer[:3] == [4, unique_id, code], (frame, answer)
    # the connection is still up and serves a good message
    await ws.send('[2,"ok","Heartbeat",{}]')
    answer = json.loads(await ws.recv())
    assert answer[:2] == [3, "ok"]
    await ws.close()
    dead = await asyncio.to_thread(
        wait_rows, influx, 'SELECT * FROM "deadletter" WHERE device_type = $t', len(frames),
        t="evcharger",
    )  # fmt: skip
    assert {d["reason_code"] for d in dead} == {c for c, _ in frames.values()}
    assert all(d["topic"] == "ocpp/ev-o1" and d["reason"] for d in dead)


async def test_a_broker_outage_loses_nothing_and_a_queued_session_lands_at_its_own_time(
    gateway: Gateway, auth_broker: AuthBroker, ingesting: None, influx: Influx
) -> None:
    point, task = await charger(gateway, "ev-o3")
    await point.boot()
    auth_broker.broker.stop()  # the broker goes away; the charger keeps getting its answers
    # a session the charger queued while it was offline, sent late with its own old times
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    start = await point.call(call.StartTransaction(
        connector_id=2, id_tag="CARD-Q", meter_start=500, timestamp=ocpp_time(t0)
    ))  # fmt: skip
    sent = 40
    for i in range(sent):
        sample = meter(t0 + timedelta(minutes=i), 500 + i * 100, 6_000)
        await point.call(call.MeterValues(
            connector_id=2, transaction_id=start.transaction_id, meter_value=[sample]
        ))  # fmt: skip
    await point.call(call.StopTransaction(
        meter_stop=500 + sent * 100, timestamp=ocpp_time(t0 + timedelta(minutes=sent)),
        transaction_id=start.transaction_id, reason="Local",
        transaction_data=[meter(t0 + timedelta(minutes=sent), 500 + sent * 100, 0)],
    ))  # fmt: skip
    auth_broker.broker.start()
    got = await asyncio.to_thread(
        wait_rows, influx, 'SELECT * FROM "evcharger" WHERE device_id = $d', sent + 1, 60,
        d="ev-o3",
    )  # fmt: skip
    assert len(got) == sent + 1, "every reading sent while the broker was down is stored"
    assert at(got, t0)["energy"] == pytest.approx(0.5)
    assert sorted(r["seq"] for r in got) == list(range(sent + 1))
    events = await asyncio.to_thread(
        wait_rows, influx, 'SELECT * FROM "evcharger_event" WHERE kind = $k', 1, k="sessionStop"
    )
    assert events[0]["time"].startswith(
        (t0 + timedelta(minutes=sent)).strftime("%Y-%m-%dT%H:%M:%S")
    )
    assert events[0]["energy"] == pytest.approx(sent * 0.1)
    assert events[0]["duration"] == sent * 60.0
    task.cancel()
    await point.ws.close()


async def test_transaction_ids_and_seq_continue_across_a_restart(
    gateway: Gateway, auth_broker: AuthBroker, influx: Influx, city: str, tmp_path: Path
) -> None:
    async def one_session() -> int:
        point, task = await charger(gateway, "ev-o1")
        now = ocpp_time(datetime.now(UTC))
        start = await point.call(call.StartTransaction(
            connector_id=1, id_tag="X", meter_start=0, timestamp=now
        ))  # fmt: skip
        task.cancel()
        await point.ws.close()
        return int(start.transaction_id)

    first = await one_session()
    gateway.proc.terminate()
    assert gateway.proc.wait(30) == 0
    port = int(gateway.url.split(":")[2].split("/")[0])
    env = smartcity_env(auth_broker.url("ocpp"), influx, city)
    gateway.proc = start_gateway(env, tmp_path, gateway.registry, port)
    second = await one_session()
    assert second == first + 1


def test_smartcity_simulate_via_ocpp_feeds_the_chargers_readings(
    gateway: Gateway, auth_broker: AuthBroker, ingesting: None, influx: Influx, city: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    engine = make_engine(gateway.registry)
    passwords = {}
    with Session(engine, expire_on_commit=False) as session:
        for cid in ("ev-00001", "ev-00002"):
            new = provisioning.NewDevice("evcharger", cid, "Po", 45.13, 10.02)
            creds = provisioning.provision(session, auth_broker.admin, city, new, "test")
            assert creds.ocpp_password is not None
            passwords[cid] = creds.ocpp_password
    engine.dispose()
    secrets_file = tmp_path / "ocpp-passwords.json"
    secrets_file.write_text(json.dumps(passwords))
    done = run_smartcity(
        "simulate", "--streetlights", "0", "--bins", "0", "--chargers", "2",
        "--fleet", "airquality=0", "--messages", "20",
        "--speed", "0", "--via", "ocpp", "--ocpp-url", gateway.url, "--ocpp-passwords",
        str(secrets_file), "--no-progress",
        env=smartcity_env(auth_broker.url("simulator"), influx, city), timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    q = 'SELECT count(seq) FROM "evcharger" GROUP BY device_id'
    # every simulated reading became one MeterValues per connector, each a stored reading
    deadline = time.monotonic() + 30
    rows = influx.query(q)
    while sum(int(r["count"]) for r in rows) < 20:
        assert time.monotonic() < deadline, rows
        time.sleep(0.2)
        rows = influx.query(q)
    assert {r["device_id"] for r in rows} == {"ev-00001", "ev-00002"}


async def test_missed_heartbeats_report_a_charger_offline_and_its_next_message_online(
    gateway: Gateway, ingesting: None, influx: Influx
) -> None:
    point, task = await charger(gateway, "ev-o2")
    await point.boot()
    # the gateway's --heartbeat-interval 2 and --offline-after 2: silent 4 s means offline
    offline = await asyncio.to_thread(
        wait_rows, influx, 'SELECT * FROM "device_status" WHERE device_id = $d AND online = 0', 1,
        d="ev-o2",
    )  # fmt: skip
    assert offline, "a silent charger is reported offline while still connected"
    before = len(influx.query('SELECT * FROM "device_status" WHERE device_id = $d', d="ev-o2"))
    await point.call(call.Heartbeat())
    online = await asyncio.to_thread(
        wait_rows, influx, 'SELECT * FROM "device_status" WHERE device_id = $d', before + 1,
        d="ev-o2",
    )  # fmt: skip
    assert online[-1]["online"] == 1
    assert online[-1]["time"] > offline[0]["time"], "online again on its next message"
    task.cancel()
    await point.ws.close()


def test_up_gives_its_simulated_chargers_ocpp_passwords_for_the_simulator(tmp_path: Path) -> None:
    """``smartcity up --chargers-via ocpp``: the fleet's chargers get OCPP passwords, their
    hashes in the registry and the passwords in an owner-only file for ``--ocpp-passwords``."""
    from smartcity.charger_auth import verify_password
    from stack.up import UpSettings, prepare_registry

    settings = UpSettings(
        data_dir=tmp_path, streetlights=1, bins=1, chargers=3, fleet={"airquality": 0},
        chargers_via="ocpp",
    )  # fmt: skip
    registry = f"sqlite:///{tmp_path}/registry.db"
    assert prepare_registry(registry, settings) == 5
    secrets_file = tmp_path / "ocpp" / "passwords.json"
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    passwords = json.loads(secrets_file.read_text())
    assert len(passwords) == 3
    engine = make_engine(registry)
    with Session(engine) as session:
        for device_id, password in passwords.items():
            device = session.get(Device, device_id)
            assert device is not None
            assert device.device_type == "evcharger"
            assert device.ocpp_password_hash is not None
            assert verify_password(password, device.ocpp_password_hash)
            assert not verify_password(password + "x", device.ocpp_password_hash)
    engine.dispose()


async def test_security_profile_2_is_the_same_login_over_tls(
    gateway: Gateway, auth_broker: AuthBroker, influx: Influx, city: str, tmp_path: Path
) -> None:
    """``--cert-file/--key-file``: chargers connect with wss://, Basic auth over TLS."""
    import ssl

    key, cert = await asyncio.to_thread(self_signed, tmp_path / "tls")
    port = free_port()
    env = smartcity_env(auth_broker.url("ocpp"), influx, city)
    env |= {"SMARTCITY_OCPP_CERT_FILE": str(cert), "SMARTCITY_OCPP_KEY_FILE": str(key)}
    secure = tmp_path / "secure"
    secure.mkdir()
    proc = start_gateway(env, secure, gateway.registry, port)
    try:
        trust = ssl.create_default_context(cafile=str(cert))
        url = f"wss://127.0.0.1:{port}/ocpp"
        ws = await open_charger(url, "ev-o1", gateway.passwords["ev-o1"], ssl=trust)
        point = SimulatedChargePoint("ev-o1", ws)
        task = asyncio.ensure_future(point.start())
        assert (await point.boot()).status == "Accepted"
        task.cancel()
        await ws.close()
        with pytest.raises(InvalidStatus):
            await open_charger(url, "ev-o1", "wrong", ssl=trust)
    finally:
        proc.terminate()
        proc.wait(30)
