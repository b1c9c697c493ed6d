"""``smartcity lorawan`` on real servers: ChirpStack v4 events published with ``mosquitto_pub``
(as the ``chirpstack`` account) through the bridge and the ingester into InfluxDB.

Expected values come from the vendor's example (Milesight EM400-UDL README: 01755C 03670101
04824408 050001 = 92 %, 25.7 °C, 2116 mm, tilt), written here independently of the profile.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.orm import Session

from simulators.chirpstack import dev_eui
from simulators.fleet import build_fleet
from smartcity import dynsec, provisioning
from smartcity.contract import DEADLETTER_TOPIC
from smartcity.registry.db import make_engine
from tests.conftest import AuthBroker, Influx, IngesterProcess, run_smartcity, smartcity_env

EUI = "24e124128c00a001"
DEVICE = "wb-lora-1"
APP = "5f1a9c3e-0000-4000-8000-000000000001"
EXAMPLE = bytes.fromhex("01755C0367010104824408050001")


def at(seconds_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat()


def uplink(
    fcnt: int, time_: str, data: bytes, dedup: str, fport: int = 85, eui: str = EUI
) -> bytes:
    return json.dumps(
        {
            "deduplicationId": dedup,
            "time": time_,
            "deviceInfo": {"devEui": eui, "applicationId": APP, "deviceName": DEVICE},
            "devAddr": "01fa2b3c",
            "fCnt": fcnt,
            "fPort": fport,
            "data": base64.b64encode(data).decode(),
            "rxInfo": [{"gatewayId": "0016c001ff10a235", "rssi": -97, "snr": 7.5}],
            "txInfo": {"frequency": 868100000, "modulation": {"lora": {"spreadingFactor": 9}}},
        }
    ).encode()


def event(kind: str, eui: str = EUI) -> str:
    return f"application/{APP}/device/{eui}/event/{kind}"


def mosquitto_pub(auth: AuthBroker, user: str, topic: str, payload: bytes) -> None:
    """One QoS 1 message from a service account (its login is also its client id)."""
    host, port, password = auth.broker.host, str(auth.broker.port), auth.passwords[user]
    args = ["-h", host, "-p", port, "-u", user, "-P", password, "-i", user, "-q", "1"]
    done = subprocess.run(
        ["mosquitto_pub", *args, "-t", topic, "-s"],
        input=payload,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr


class Collector:
    """Messages on one topic filter, read with a service account's login."""

    def __init__(self, auth: AuthBroker, user: str, client_id: str, flt: str) -> None:
        self.got: list[tuple[str, bytes]] = []
        ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.username_pw_set(user, auth.passwords[user])
        self.client.on_message = lambda c, u, m: self.got.append((m.topic, bytes(m.payload)))
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect(auth.broker.host, auth.broker.port)
        self.client.subscribe(flt, qos=1)
        self.client.loop_start()
        assert ready.wait(10)

    def wait(self, n: int, timeout: float = 30) -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.got) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.got)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@dataclass
class Lora:
    auth: AuthBroker
    influx: Influx
    bridge: subprocess.Popen[bytes]
    log_path: Path
    registry: str

    def pub(self, topic: str, payload: bytes) -> None:
        """As ChirpStack's MQTT integration: the chirpstack account, QoS 1."""
        mosquitto_pub(self.auth, "chirpstack", topic, payload)

    def rows(self, measurement: str) -> list[dict[str, object]]:
        return self.influx.query(
            f'SELECT * FROM "{measurement}" WHERE device_id = $d ORDER BY time', d=DEVICE
        )

    def wait_rows(self, measurement: str, n: int) -> list[dict[str, object]]:
        """The rows once there are ``n`` (then a moment more, to see nothing extra arrives)."""
        deadline = time.monotonic() + 30
        while len(self.rows(measurement)) < n and time.monotonic() < deadline:
            assert self.bridge.poll() is None, self.log()
            time.sleep(0.1)
        time.sleep(0.5)
        return self.rows(measurement)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def lora(auth_broker: AuthBroker, influx: Influx, city: str, tmp_path: Path) -> Iterator[Lora]:
    registry = f"sqlite:///{tmp_path}/registry.db"
    admin_file = tmp_path / "admin-password"
    dynsec.write_secret(admin_file, auth_broker.passwords["smartcity-admin"])
    base = {k: v for k, v in os.environ.items() if not k.startswith("SMARTCITY_")}
    provisioned = run_smartcity(
        "devices", "provision", "--device-type", "wastebin", "--device-id", DEVICE,
        "--zone", "Centro", "--lat", "45.1335", "--lon", "10.0245",
        "--dev-eui", EUI.upper(), "--profile", "milesight-em400-udl",
        env=base | {
            "SMARTCITY_MQTT_URL": auth_broker.broker.url, "SMARTCITY_CITY": city,
            "SMARTCITY_DEVICES_REGISTRY_URL": registry,
            "SMARTCITY_DEVICES_ADMIN_PASSWORD_FILE": str(admin_file),
        },
    )  # fmt: skip
    assert provisioned.returncode == 0, provisioned.stderr
    env = smartcity_env(auth_broker.url("ingest"), influx, city)
    ingester = IngesterProcess(
        env, tmp_path / "ingest.log", "--spool-dir", str(tmp_path / "spool"), "--metrics-port", "0"
    ).start().wait_subscribed()  # fmt: skip
    log_path = tmp_path / "lorawan.log"
    with log_path.open("ab") as log:
        bridge = subprocess.Popen(
            [sys.executable, "-m", "smartcity", "lorawan"],
            env=env | {
                "SMARTCITY_MQTT_URL": auth_broker.url("lorawan"),
                "SMARTCITY_LORAWAN_REGISTRY_URL": registry,
                "SMARTCITY_LORAWAN_STATE": str(tmp_path / "lorawan-state.db"),
            },
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    made = Lora(auth_broker, influx, bridge, log_path, registry)
    deadline = time.monotonic() + 30
    while "subscribed to" not in made.log():
        assert bridge.poll() is None, made.log()
        assert time.monotonic() < deadline, made.log()
        time.sleep(0.05)
    try:
        yield made
    finally:
        bridge.terminate()
        bridge.wait(30)
        ingester.stop()


def em400_fill(distance_mm: float) -> float:
    return (2500 - distance_mm) / 2200  # the profile's bin: 2500 mm empty, 300 mm full


def test_uplinks_rejoin_duplicates_and_refusals(lora: Lora) -> None:
    dead = Collector(lora.auth, "observer", "observer", DEADLETTER_TOPIC)
    first_time = at(600)
    lora.pub(event("up"), uplink(10, first_time, EXAMPLE, "dd-1"))
    (row,) = lora.wait_rows("wastebin", 1)
    assert row["temperature"] == pytest.approx(25.7)
    assert row["batteryLevel"] == pytest.approx(0.92)
    assert row["fillingLevel"] == pytest.approx(em400_fill(2116))
    assert (row["status"], row["seq"], row["zone"]) == ("lidOpen", 10, "Centro")
    health = lora.wait_rows("device_health", 1)[-1]
    assert (health["rssi"], health["snr"], health["spreadingFactor"]) == (-97.0, 7.5, 9)
    assert health["gatewayId"] == "0016c001ff10a235"

    # a duplicate (same deduplicationId) adds no point; the next uplink does
    lora.pub(event("up"), uplink(10, first_time, EXAMPLE, "dd-1"))
    lora.pub(event("up"), uplink(11, at(500), EXAMPLE, "dd-2"))
    assert len(lora.wait_rows("wastebin", 2)) == 2

    # a re-join resets fCnt: the new session's points are new ones, the old ones stay
    join = {"deduplicationId": "dd-j", "time": at(400), "deviceInfo": {"devEui": EUI}}
    lora.pub(event("join"), json.dumps(join).encode())
    lora.pub(event("up"), uplink(0, at(300), EXAMPLE, "dd-3"))
    lora.pub(event("up"), uplink(1, at(200), EXAMPLE, "dd-4"))
    # and the pre-join uplink redelivered after the join still lands on its own point
    lora.pub(event("up"), uplink(10, first_time, EXAMPLE, "dd-1"))
    rows = lora.wait_rows("wastebin", 4)
    assert [r["seq"] for r in rows] == [10, 11, 2**32, 2**32 + 1]

    # refusals: dead-lettered with the reason, and the bridge carries on
    bad = [
        (
            event("up", "00000000000000aa"),
            uplink(1, at(100), EXAMPLE, "x1", eui="00000000000000aa"),
            "unknown_dev_eui",
        ),
        (event("up"), b"{not json", "bad_json"),
        (event("up"), uplink(12, at(100), EXAMPLE[:5], "x2"), "wrong_length"),
        (event("up"), uplink(13, at(100), EXAMPLE, "x3", fport=10), "unknown_fport"),
        (event("up"), uplink(14, at(100), bytes.fromhex("0482fdff"), "x4"), "out_of_range"),
        (event("up"), uplink(15, at(100), bytes.fromhex("77"), "x5"), "wrong_length"),
        (f"application/{APP}/device/{EUI}/event/nonsense", b"{}", "bad_topic"),
    ]
    for topic, payload, _ in bad:
        lora.pub(topic, payload)
    letters = [json.loads(p) for _, p in dead.wait(len(bad))]
    dead.close()
    assert [d["code"] for d in letters] == [code for _, _, code in bad]
    assert all(d["reason"] for d in letters)
    assert "00000000000000aa" in letters[0]["reason"]
    # and recorded in InfluxDB's deadletter measurement, as the ingester's refusals are
    deadline = time.monotonic() + 30
    while len(stored := lora.influx.query('SELECT * FROM "deadletter"')) < len(bad):
        assert time.monotonic() < deadline, lora.log()
        time.sleep(0.1)
    assert sorted(r["reason_code"] for r in stored) == sorted(code for _, _, code in bad)
    lora.pub(event("up"), uplink(2, at(50), EXAMPLE, "dd-5"))
    assert len(lora.wait_rows("wastebin", 5)) == 5
    assert lora.bridge.poll() is None


def test_command_becomes_downlink_and_ack_its_result(lora: Lora, city: str) -> None:
    lora.pub(event("up"), uplink(1, at(60), EXAMPLE, "c-1"))  # the bridge learns its application
    lora.wait_rows("wastebin", 1)
    chirpstack = Collector(
        lora.auth, "chirpstack", "chirpstack", "application/+/device/+/command/down"
    )
    command = {"v": 1, "id": "op-lora-1", "action": "setInterval", "interval": 1200}
    topic = f"smartcity/v1/{city}/wastebin/{DEVICE}/cmd"
    mosquitto_pub(lora.auth, "api", topic, json.dumps(command).encode())
    ((topic, payload),) = chirpstack.wait(1)
    assert topic == f"application/{APP}/device/{EUI}/command/down"
    down = json.loads(payload)
    # the vendor's report-interval downlink: ff03 + 1200 s little-endian, fPort 85, confirmed
    assert (down["fPort"], base64.b64decode(down["data"])) == (85, bytes.fromhex("ff03b004"))
    assert down["confirmed"] is True
    ack = {
        "deduplicationId": "c-ack",
        "time": at(1),
        "deviceInfo": {"devEui": EUI, "applicationId": APP},
        "queueItemId": down["id"],
        "acknowledged": True,
        "fCntDown": 3,
    }
    chirpstack.client.publish(event("ack"), json.dumps(ack), qos=1).wait_for_publish(10)
    chirpstack.close()
    deadline = time.monotonic() + 30
    while not (results := [r for r in lora.rows("device_command") if r["state"] == "applied"]):
        assert time.monotonic() < deadline, lora.log()
        time.sleep(0.1)
    assert [r["command_id"] for r in results] == ["op-lora-1"]


def test_simulated_bins_via_chirpstack(lora: Lora, city: str) -> None:
    """``smartcity simulate --via chirpstack``: bins as EM400-UDL uplinks, stored as readings."""
    bins = [d for d in build_fleet(3, {"wastebin": 3}, 1.0) if d.device_type.name == "wastebin"]
    engine = make_engine(lora.registry)
    with Session(engine, expire_on_commit=False) as session:
        for dev in bins:
            new = provisioning.NewDevice(
                "wastebin", dev.device_id, dev.placement.zone, dev.placement.lat,
                dev.placement.lon, dev_eui=dev_eui(dev.device_id),
                lorawan_profile="milesight-em400-udl",
            )  # fmt: skip
            provisioning.provision(session, lora.auth.admin, city, new, "test")
    engine.dispose()
    env = smartcity_env(lora.auth.url("chirpstack"), lora.influx, city)
    done = run_smartcity(
        "simulate", "--bins", "3", "--streetlights", "0", "--chargers", "0", "--seed", "3",
        "--fleet", "airquality=0",
        "--via", "chirpstack", "--messages", "9", "--speed", "0", "--no-progress",
        env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 30
    while lora.influx.count("wastebin") < 9:
        assert time.monotonic() < deadline, lora.log()
        time.sleep(0.1)
    rows = lora.influx.query('SELECT * FROM "wastebin"')
    assert {r["device_id"] for r in rows} == {d.device_id for d in bins}
    assert all(0 <= float(r["fillingLevel"]) <= 1 for r in rows)  # type: ignore[arg-type]
