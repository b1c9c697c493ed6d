"""The ingester and the device registry: registered zones win, unregistered devices are counted."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from ingest.convert import message_lines
from ingest.registry import RegistryZones
from simulators.publisher import AckingPublisher
from smartcity.contract import InvalidMessage, decode, topic
from smartcity.registry.db import make_engine
from smartcity.registry.models import Device
from smartcity.storage import UNREGISTERED_MEASUREMENT

from .conftest import Influx, IngesterProcess, smartcity_env


def register(url: str, device_id: str, zone: str) -> None:
    now = datetime.now(UTC)
    with Session(make_engine(url)) as session:
        session.merge(Device(device_id=device_id, device_type="wastebin", zone=zone, lat=45.13,
                             lon=10.02, created_at=now, updated_at=now))  # fmt: skip
        session.commit()


def reading(seq: int, zone: str = "Centro") -> bytes:
    ts = (datetime.now(UTC) - timedelta(minutes=5) + timedelta(seconds=seq)).isoformat()
    return json.dumps({"v": 1, "zone": zone, "readings": [{
        "ts": ts, "seq": seq, "fillingLevel": 0.5, "temperature": 11.0,
        "storedWasteKind": "plastic", "status": "ok", "batteryLevel": 0.7}]}).encode()  # fmt: skip


def test_registered_zone_wins_and_unknown_devices_are_counted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/registry.db"
    register(url, "wb-1", "Po")
    zones = RegistryZones(url, refresh=3600)
    payload = reading(1)
    known = message_lines(decode(topic("wastebin", "wb-1", "telemetry"), payload), 7, zones)
    assert len(known) == 1
    assert ",zone=Po " in known[0]
    unknown = message_lines(decode(topic("wastebin", "wb-2", "telemetry"), payload), 7, zones)
    assert ",zone=Centro " in unknown[0]
    assert unknown[1].startswith(f"{UNREGISTERED_MEASUREMENT},device_id=wb-2,")
    assert unknown[1].endswith(" count=1i 7")
    # without a registry nothing changes
    plain = message_lines(decode(topic("wastebin", "wb-2", "telemetry"), payload), 7)
    assert plain == unknown[:1]


def test_a_registered_device_publishing_as_another_type_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/registry.db"
    register(url, "wb-1", "Po")
    zones = RegistryZones(url, refresh=3600)
    status = b'{"v":1,"state":"online"}'
    for device_type in ("streetlight", "evcharger"):
        msg = decode(topic(device_type, "wb-1", "status"), status)
        with pytest.raises(InvalidMessage) as exc:
            message_lines(msg, 7, zones)
        assert exc.value.code == "type_mismatch"
        assert "registered as a wastebin" in exc.value.reason
    assert message_lines(decode(topic("wastebin", "wb-1", "status"), status), 7, zones)
    # an unregistered device cannot disagree with the registry: it is counted, as before
    assert message_lines(decode(topic("streetlight", "sl-9", "status"), status), 7, zones)


def test_an_unreadable_registry_is_an_empty_one_until_it_can_be_read(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/later.db"
    zones = RegistryZones(url, refresh=0.05)  # no tables yet: the API has not run
    assert zones.lookup("wb-1") is None
    register(url, "wb-1", "Zaist")
    deadline = time.monotonic() + 10
    while zones.lookup("wb-1") != ("Zaist", "wastebin"):
        assert time.monotonic() < deadline, "the registry was not re-read"
        time.sleep(0.05)


def test_ingester_tags_points_with_the_registry_zone(
    mosquitto, influx: Influx, city: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/registry.db"
    register(url, "wb-known", "Po")
    env = smartcity_env(mosquitto.url, influx, city)
    env |= {"SMARTCITY_INGEST_REGISTRY_URL": url, "SMARTCITY_INGEST_REGISTRY_REFRESH": "0.2"}
    proc = IngesterProcess(env, tmp_path / "ingest.log", "--client-id", f"i-{city}",
                           "--share-group", f"g{city}").start().wait_subscribed()  # fmt: skip
    try:
        pub = AckingPublisher(mosquitto.url, f"pub-{city}")
        pub.connect()
        for seq in range(3):
            for device_id in ("wb-known", "wb-stranger"):
                pub.publish(topic("wastebin", device_id, "telemetry", city), reading(seq))
        # a registered bin is a bin: it cannot report as a charger or a street light
        online = b'{"v":1,"state":"online"}'
        for device_type in ("wastebin", "evcharger", "streetlight"):
            pub.publish(topic(device_type, "wb-known", "status", city), online)
        assert pub.drain(30)
        assert influx.wait_for_count("wastebin", 6) == 6
        assert influx.wait_for_count("deadletter", 2, field="reason") == 2
        refused = influx.query('SELECT "reason", "device_type", "reason_code" FROM "deadletter"')
        assert sorted((r["reason_code"], r["device_type"]) for r in refused) == [
            ("type_mismatch", "evcharger"),
            ("type_mismatch", "streetlight"),
        ]
        stored = influx.query('SELECT count("state") FROM "device_status" GROUP BY "device_type"')
        assert [r["device_type"] for r in stored] == ["wastebin"]
        zones = {(r["device_id"], r["zone"]) for r in influx.query(
            'SELECT count("seq") FROM "wastebin" GROUP BY "device_id", "zone"')}  # fmt: skip
        assert zones == {("wb-known", "Po"), ("wb-stranger", "Centro")}
        assert influx.count(UNREGISTERED_MEASUREMENT, "count", device_id="wb-stranger") == 3
        assert influx.count(UNREGISTERED_MEASUREMENT, "count", device_id="wb-known") == 0
        # registering the stranger takes effect at the next re-read (every 0.2 s here)
        register(url, "wb-stranger", "Bagnara")
        query = 'SELECT count("seq") FROM "wastebin" WHERE "zone" = $z'
        deadline = time.monotonic() + 30
        seq = 10
        while not influx.query(query, z="Bagnara"):
            assert time.monotonic() < deadline, "the new registration was never used"
            pub.publish(topic("wastebin", "wb-stranger", "telemetry", city), reading(seq))
            assert pub.drain(30)
            seq += 1
            time.sleep(0.3)
        pub.close()
    finally:
        assert proc.stop() == 0, proc.log()


def test_the_ingest_extra_alone_reads_the_registry(tmp_path: Path) -> None:
    """Issue 11: an ingester used to need the API's extra (FastAPI) to read the registry. With
    FastAPI, Starlette and the api package made unimportable, the ingester still loads and
    finds a registered device."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path}/registry.db"
    register(url, "wb-1", "Po")
    script = (
        "import sys\n"
        "for name in ('fastapi', 'starlette', 'uvicorn', 'api'):\n"
        "    sys.modules[name] = None  # importing it now fails, as if not installed\n"
        "import ingest.cli, ingest.service\n"
        "from ingest.registry import RegistryZones\n"
        f"print(RegistryZones({url!r}, refresh=3600).lookup('wb-1'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Registration(zone='Po', device_type='wastebin')"
