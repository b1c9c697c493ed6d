"""Provisioning, rotation, revocation and import (issue 12 §2) on a real broker, InfluxDB and
ingester: ``smartcity devices`` and :mod:`smartcity.provisioning`, the registry and the broker
checked against each other after every step, failures included.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, inspect, select, text
from sqlalchemy.orm import Session

from smartcity import broker_accounts, dynsec, provisioning
from smartcity.broker_accounts import BrokerAccountError
from smartcity.broker_acl import SERVICE_ACCOUNTS, service_accounts
from smartcity.registry.db import make_engine
from smartcity.registry.models import AuditEntry, Device

from .conftest import AuthBroker, Influx, IngesterProcess, run_smartcity, running, smartcity_env
from .test_broker_accounts import Client

pytestmark = pytest.mark.servers
ACTOR = "cli:test"


@pytest.fixture
def registry(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/registry.db"


@pytest.fixture
def session(registry: str) -> Iterator[Session]:
    engine = make_engine(registry)
    with Session(engine, expire_on_commit=False) as s:
        yield s
    engine.dispose()


@pytest.fixture
def cli(auth_broker: AuthBroker, registry: str, tmp_path: Path) -> Any:
    """``smartcity devices ...`` as an operator runs it: settings from SMARTCITY_* variables."""
    admin_file = tmp_path / "admin-password"
    dynsec.write_secret(admin_file, auth_broker.passwords["smartcity-admin"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTCITY_")}
    env |= {
        "SMARTCITY_MQTT_URL": auth_broker.broker.url,
        "SMARTCITY_CITY": auth_broker.city,
        "SMARTCITY_DEVICES_REGISTRY_URL": registry,
        "SMARTCITY_DEVICES_ADMIN_PASSWORD_FILE": str(admin_file),
    }

    def devices(*args: str) -> subprocess.CompletedProcess[str]:
        return run_smartcity("devices", *args, env=env)

    return devices


def new(device_id: str = "sl-p1", kind: str = "streetlight") -> provisioning.NewDevice:
    return provisioning.NewDevice(kind, device_id, "Centro", 45.1335, 10.0245, "via Roma 1")


def can_login(auth: AuthBroker, user: str, password: str) -> bool:
    ids = {a.username: a.clientid for a in service_accounts(auth.city)}
    client = Client(auth, user, ids.get(user, user), password)
    try:
        return not client.connack.is_failure
    finally:
        client.close()


def broker_has(auth: AuthBroker, device_id: str) -> bool:
    try:
        broker_accounts.get_client(auth.admin, device_id)
    except BrokerAccountError as exc:
        if "not found" in str(exc):
            return False
        raise
    return True


def roles(auth: AuthBroker) -> list[str]:
    (answer,) = broker_accounts.run(auth.admin, {"command": "listRoles"})
    return list(answer["data"]["roles"])


def audit(session: Session, device_id: str) -> list[tuple[str, str]]:
    session.expire_all()
    rows = session.scalars(select(AuditEntry).where(AuditEntry.device_id == device_id))
    return [(r.action, r.outcome.split(":")[0]) for r in rows]


def agent(config: Path, tmp_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = (tmp_path / "agent.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "smartcity", "edge", "run", "--config", str(config),
         "--interval", "0.2", "--reconnect-min-delay", "0.1", "--reconnect-max-delay", "0.3",
         "--outbox", str(tmp_path / "outbox.sqlite")],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    log.close()
    return proc


def wait_log(path: Path, text: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return True
        time.sleep(0.02)
    return False


def test_a_provisioned_agent_stores_readings_rotation_refuses_the_old_password_revocation_cuts_it(
    auth_broker: AuthBroker, influx: Influx, cli: Any, session: Session, tmp_path: Path
) -> None:
    auth = auth_broker
    ingester = IngesterProcess(
        smartcity_env(auth.url("ingest"), influx, auth.city), tmp_path / "ingest.log",
        "--spool-dir", str(tmp_path / "spool"), "--metrics-port", "0",
    ).start().wait_subscribed()  # fmt: skip
    config = tmp_path / "agent.toml"
    made = cli(
        "provision", "--device-type", "streetlight", "--device-id", "sl-p1", "--zone", "Centro",
        "--lat", "45.1335", "--lon", "10.0245", "--out", str(config),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "password is only there" in made.stdout
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    password = config.read_text().split('password = "')[1].split('"')[0]
    assert password not in made.stdout
    bare = {k: v for k, v in os.environ.items() if not k.startswith("SMARTCITY_")}
    proc = agent(config, tmp_path, bare)
    log = tmp_path / "agent.log"
    try:
        assert influx.wait_for_count("streetlight", 3) >= 3, log.read_text()
        assert influx.count("streetlight", device_id="sl-p1") >= 3

        rotated = cli("rotate", "sl-p1")
        assert rotated.returncode == 0, rotated.stderr
        fresh = rotated.stdout.split("password ")[1].split()[0]
        assert not can_login(auth, "sl-p1", password)
        assert can_login(auth, "sl-p1", fresh)
        again_out = tmp_path / "rotated.toml"
        rotated = cli("rotate", "sl-p1", "--out", str(again_out))
        assert rotated.returncode == 0, rotated.stderr
        assert stat.S_IMODE(again_out.stat().st_mode) == 0o600
        previous, fresh = fresh, again_out.read_text().split('password = "')[1].split('"')[0]
        assert fresh not in rotated.stdout
        assert not can_login(auth, "sl-p1", previous)
        assert can_login(auth, "sl-p1", fresh)

        revoked = cli("revoke", "sl-p1")
        assert revoked.returncode == 0, revoked.stderr
        assert wait_log(log, "broker connection lost", 2.0), "still connected 2 s after revoke"
        assert wait_log(log, "broker refused the connection", 10.0), log.read_text()
        assert not can_login(auth, "sl-p1", fresh)
    finally:
        proc.terminate()
        proc.wait(30)
        assert ingester.stop() == 0, ingester.log()
    device = session.get(Device, "sl-p1")
    assert device is not None
    assert device.revoked_at is not None
    assert audit(session, "sl-p1") == [
        ("device.provision", "ok"),
        ("device.rotate", "ok"),
        ("device.rotate", "ok"),
        ("device.revoke", "ok"),
    ]
    assert password not in json.dumps([e.detail for e in session.scalars(select(AuditEntry))])
    # a revoked device gets no new password; unknown ids are named
    again = cli("rotate", "sl-p1")
    assert again.returncode == 1
    assert "revoked" in again.stderr
    for action in ("rotate", "revoke"):
        unknown = cli(action, "sl-nope")
        assert unknown.returncode == 1
        assert "device 'sl-nope' is not in the registry" in unknown.stderr


def test_a_csv_with_bad_lines_provisions_the_good_ones_and_lists_the_bad_with_reasons(
    auth_broker: AuthBroker, cli: Any, session: Session, tmp_path: Path
) -> None:
    auth = auth_broker
    lines = [
        "device_type,device_id,zone,lat,lon,name",
        "streetlight,sl-c1,Centro,45.13,10.02,via Verdi 2",
        "toaster,t-1,Centro,45.13,10.02",
        "wastebin,wb-c2,Atlantide,45.13,10.02",
        "wastebin,wb-c3,Po,north,10.02",
        "streetlight,sl-c1,Po,45.12,10.01",
        "evcharger,ev-c4,Po",
        "streetlight,sl/+,Po,45.12,10.01",
        "",
        "evcharger,ev-c5,Zaist,45.14,10.0075",
    ]
    csv_file = tmp_path / "devices.csv"
    csv_file.write_text("\n".join(lines) + "\n")
    out = tmp_path / "agents"
    done = cli("import", str(csv_file), "--out-dir", str(out))
    assert done.returncode == 1, done.stderr
    report = done.stdout.splitlines()
    assert report[0] == f"line 2: sl-c1: created; agent config {out}/sl-c1.toml"
    assert report[-1] == f"line 10: ev-c5: created; agent config {out}/ev-c5.toml"
    refused = "\n".join(report[1:-1])
    for expected in (
        "line 3: t-1: refused: unknown device type 'toaster'",
        "line 4: wb-c2: refused: unknown zone 'Atlantide'",
        "line 5: wb-c3: refused: lat 'north' is not a number",
        "line 6: sl-c1: refused: device 'sl-c1' is already registered",
        "line 7: ev-c4: refused: 3 columns",
        "line 8: sl/+: refused: device id 'sl/+' does not match",
    ):
        assert expected in refused, (expected, done.stdout)
    assert "2 created, 6 refused" in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["ev-c5.toml", "sl-c1.toml"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in out.iterdir())
    # registry and broker agree: the good ones in both, the bad ones in neither
    registered = sorted(d.device_id for d in session.scalars(select(Device)))
    assert registered == ["ev-c5", "sl-c1"]
    for device_id in ("sl-c1", "ev-c5"):
        assert broker_has(auth, device_id)
        text = (out / f"{device_id}.toml").read_text()
        assert can_login(auth, device_id, text.split('password = "')[1].split('"')[0])
    for device_id in ("t-1", "wb-c2", "wb-c3", "ev-c4"):
        assert not broker_has(auth, device_id)
    assert sl_c1_zone(session) == "Centro"  # the duplicate line changed nothing
    assert audit(session, "sl-c1") == [("device.import", "ok"), ("device.import", "refused")]


def sl_c1_zone(session: Session) -> str:
    session.expire_all()
    device = session.get(Device, "sl-c1")
    assert device is not None
    return device.zone


def test_a_duplicate_is_refused_and_changes_nothing(
    auth_broker: AuthBroker, cli: Any, session: Session
) -> None:
    auth = auth_broker
    first = provisioning.provision(session, auth.admin, auth.city, new(), ACTOR)
    with pytest.raises(provisioning.Duplicate, match="already registered"):
        provisioning.provision(session, auth.admin, auth.city, new(kind="wastebin"), ACTOR)
    again = cli(
        "provision", "--device-type", "wastebin", "--device-id", "sl-p1", "--zone", "Po",
        "--lat", "45.12", "--lon", "10.01",
    )  # fmt: skip
    assert again.returncode == 1
    assert "device 'sl-p1' is already registered; nothing was changed" in again.stderr
    session.expire_all()
    device = session.get(Device, "sl-p1")
    assert device is not None
    assert (device.device_type, device.zone) == ("streetlight", "Centro")
    assert can_login(auth, "sl-p1", first.password)
    roles_of = broker_accounts.get_client(auth.admin, "sl-p1")["roles"]
    assert roles_of == [{"rolename": "device-sl-p1"}]
    # an account the broker has but the registry lacks (smartcity broker add-device) is kept
    outside = auth.add_device("wastebin", "wb-out")
    with pytest.raises(provisioning.Duplicate, match="broker already has an account"):
        provisioning.provision(session, auth.admin, auth.city, new("wb-out", "wastebin"), ACTOR)
    assert session.get(Device, "wb-out") is None
    assert can_login(auth, "wb-out", outside)
    assert audit(session, "wb-out") == [("device.provision", "refused")]


def test_a_broker_failing_midway_leaves_registry_and_broker_agreeing(
    auth_broker: AuthBroker, session: Session
) -> None:
    auth = auth_broker
    # the broker refuses the admin after the registry row was made (flushed)
    wrong = broker_accounts.Admin(auth.broker.url, "wrong")
    with pytest.raises(provisioning.Failed, match="refused the login"):
        provisioning.provision(session, wrong, auth.city, new("sl-f1"), ACTOR)
    assert session.get(Device, "sl-f1") is None
    assert not broker_has(auth, "sl-f1")

    # the registry's commit fails after the broker made the client: the client is deleted
    def fail(*_args: object) -> None:
        raise provisioning_error()

    event.listen(session, "before_commit", fail)
    try:
        with pytest.raises(provisioning.Failed, match="broker change was undone"):
            provisioning.provision(session, auth.admin, auth.city, new("sl-f2"), ACTOR)
    finally:
        event.remove(session, "before_commit", fail)
    assert session.get(Device, "sl-f2") is None
    assert not broker_has(auth, "sl-f2")
    assert "device-sl-f2" not in roles(auth)
    # a role without a client, as a broker failing between the two steps leaves it: no obstacle
    broker_accounts.run(auth.admin, {"command": "createRole", "rolename": "device-sl-f5"})
    left = provisioning.provision(session, auth.admin, auth.city, new("sl-f5"), ACTOR)
    assert can_login(auth, "sl-f5", left.password)
    # the registry fails before the broker is asked: a clear error, the broker untouched
    event.listen(session, "before_flush", fail)
    try:
        with pytest.raises(provisioning.Failed, match="registry failed, nothing was changed"):
            provisioning.rotate(session, auth.admin, auth.city, "sl-f5", ACTOR)
    finally:
        event.remove(session, "before_flush", fail)
    assert can_login(auth, "sl-f5", left.password)
    # the broker stops between the registry change and the broker's: nothing is left
    made = provisioning.provision(session, auth.admin, auth.city, new("sl-f3"), ACTOR)
    auth.broker.stop()
    try:
        with pytest.raises(provisioning.Failed, match="cannot reach the MQTT broker"):
            provisioning.provision(session, auth.admin, auth.city, new("sl-f4"), ACTOR)
        with pytest.raises(provisioning.Failed, match="cannot reach"):
            provisioning.revoke(session, auth.admin, "sl-f3", ACTOR)
        with pytest.raises(provisioning.Failed, match="cannot reach"):
            provisioning.rotate(session, auth.admin, auth.city, "sl-f3", ACTOR)
    finally:
        for _ in running(auth.broker):
            session.expire_all()
            assert session.get(Device, "sl-f4") is None
            assert not broker_has(auth, "sl-f4")
            device = session.get(Device, "sl-f3")
            assert device is not None
            assert device.revoked_at is None
            assert can_login(auth, "sl-f3", made.password)  # neither revoked nor rotated
            outcomes = audit(session, "sl-f3")
            assert outcomes == [
                ("device.provision", "ok"),
                ("device.revoke", "failed"),
                ("device.rotate", "failed"),
            ]


def provisioning_error() -> Exception:
    from sqlalchemy.exc import OperationalError

    return OperationalError("COMMIT", {}, Exception("disk I/O error"))


def test_a_registry_from_before_revocation_gains_the_column_and_its_devices_can_be_revoked(
    auth_broker: AuthBroker, registry: str
) -> None:
    engine = make_engine(registry)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO devices (device_id, device_type, zone, lat, lon, "
                          "created_at, updated_at) VALUES ('wb-old', 'wastebin', 'Po', 45.1, "
                          "10.0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))  # fmt: skip
        conn.execute(text("ALTER TABLE devices DROP COLUMN revoked_at"))
    assert "revoked_at" not in {c["name"] for c in inspect(engine).get_columns("devices")}
    engine.dispose()
    engine = make_engine(registry)
    try:
        with Session(engine) as session:
            # registered without a broker account (before provisioning existed): marked only
            device = provisioning.revoke(session, auth_broker.admin, "wb-old", ACTOR)
            assert device.revoked_at is not None
    finally:
        engine.dispose()


def test_a_device_named_like_a_service_account_never_touches_that_account(
    auth_broker: AuthBroker, session: Session
) -> None:
    """The registry accepts a device named ``ingest`` (POST /v1/devices): revoking or rotating
    it used to disable the ingester's own login, or change its password."""
    auth = auth_broker
    now = datetime.now(UTC)
    for name in SERVICE_ACCOUNTS:
        session.add(Device(device_id=name, device_type="streetlight", zone="Po", lat=45.1,
                           lon=10.0, created_at=now, updated_at=now))  # fmt: skip
    session.commit()
    for name in SERVICE_ACCOUNTS:
        with pytest.raises(provisioning.InvalidDevice, match="service account"):
            provisioning.revoke(session, auth.admin, name, ACTOR)
        with pytest.raises(provisioning.InvalidDevice, match="service account"):
            provisioning.rotate(session, auth.admin, auth.city, name, ACTOR)
        with pytest.raises(provisioning.InvalidDevice, match="service account"):
            provisioning.add_credentials(session, auth.admin, auth.city, name, ACTOR)
    for name in SERVICE_ACCOUNTS:
        assert can_login(auth, name, auth.passwords[name]), name
