"""The broker's accounts (dynamic security plugin) on the real Mosquitto: client ids bound to
logins, devices confined to their own city, type and id, accounts changed at runtime.

Every broker here is made from ``smartcity/broker_acl.py`` by the code ``smartcity up`` runs
(:mod:`smartcity.dynsec`, :mod:`smartcity.broker_accounts`), so what passes here is what the
local run and docker-compose enforce.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest.service import SYNC_TOPIC_PREFIX
from smartcity import broker_accounts, dynsec
from smartcity.broker_acl import INGEST_SYNC, SERVICE_ACCOUNTS, SERVICE_LOGINS, service_accounts
from smartcity.contract import DEADLETTER_TOPIC, topic

from .conftest import AuthBroker, Influx, IngesterProcess, run_smartcity, running, smartcity_env
from .test_pipeline import good_reading

pytestmark = pytest.mark.servers
TIMEOUT = 10


class Client:
    """A paho MQTT 5 client that records its CONNACK, acknowledgements and disconnection."""

    def __init__(self, auth: AuthBroker, user: str, client_id: str, password: str) -> None:
        self.connack: Any = None
        self.answered = threading.Event()
        self.disconnected = threading.Event()
        self.acks: dict[int, Any] = {}
        self.acked = threading.Condition()
        self.messages: list[str] = []
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
        )
        self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.disconnected.set()
        self.client.on_publish = self._on_ack
        self.client.on_subscribe = lambda c, u, mid, reasons, p: self._on_ack(c, u, mid, reasons[0])
        self.client.on_message = lambda c, u, m: self.messages.append(m.topic)
        self.client.connect(auth.broker.host, auth.broker.port)
        self.client.loop_start()
        assert self.answered.wait(TIMEOUT), "no CONNACK"

    def _on_connect(self, c: paho.Client, u: object, f: object, reason: Any, p: object) -> None:
        self.connack = reason
        self.answered.set()
        if reason.is_failure:
            c.disconnect()  # no reconnecting in a loop after a refusal

    def _on_ack(self, c: paho.Client, u: object, mid: int, reason: Any, p: object = None) -> None:
        with self.acked:
            self.acks[mid] = reason
            self.acked.notify_all()

    def _wait(self, mid: int) -> Any:
        with self.acked:
            assert self.acked.wait_for(lambda: mid in self.acks, TIMEOUT), "no acknowledgement"
            return self.acks[mid]

    def publish(self, to: str, payload: bytes = b"{}") -> Any:
        """The PUBACK's reason code (MQTT 5 says why a publish was refused)."""
        return self._wait(self.client.publish(to, payload, qos=1).mid)

    def subscribe(self, to: str) -> Any:
        """The SUBACK's reason code."""
        return self._wait(self.client.subscribe(to, qos=1)[1])

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for c in made:
        c.close()


def login(
    auth: AuthBroker, clients: list[Client], user: str, client_id: str, password: str | None = None
) -> Client:
    owner = user.split("-")[0] if user.startswith("ingest-") else user  # a worker's login
    client = Client(auth, user, client_id, auth.passwords[owner] if password is None else password)
    clients.append(client)
    return client


def test_no_account_takes_a_client_id_not_its_own_and_the_ingester_loses_nothing(
    auth_broker: AuthBroker, influx: Influx, clients: list[Client], tmp_path: Path
) -> None:
    """Issue 10 item 1: a device account connecting as ``smartcity-ingest`` used to wipe the
    ingester's session, and one connecting as another device kicked it."""
    auth, city = auth_broker, auth_broker.city
    ingester = IngesterProcess(
        smartcity_env(auth.url("ingest"), influx, city), tmp_path / "ingest.log",
        "--spool-dir", str(tmp_path / "spool"), "--metrics-port", "0",
    ).start().wait_subscribed()  # fmt: skip
    try:
        secret = {d: auth.add_device("wastebin", d) for d in ("wb-x", "wb-y")}
        wb_x = login(auth, clients, "wb-x", "wb-x", secret["wb-x"])
        wb_y = login(auth, clients, "wb-y", "wb-y", secret["wb-y"])
        assert not wb_x.connack.is_failure
        assert not wb_y.connack.is_failure
        sent = 0

        def send() -> None:
            nonlocal sent
            reason = wb_x.publish(
                topic("wastebin", "wb-x", "telemetry", city), good_reading(sent, datetime.now(UTC))
            )
            assert not reason.is_failure, reason
            sent += 1

        send()
        attempts = [("wb-x", secret["wb-x"], "smartcity-ingest"), ("wb-x", secret["wb-x"], "wb-y")]
        attempts += [(a, auth.passwords[a], "smartcity-ingest") for a in SERVICE_ACCOUNTS]
        attempts.remove(("ingest", auth.passwords["ingest"], "smartcity-ingest"))  # its own id
        # nor may the ingester's own logins take a device's id or each other's
        attempts += [("ingest", auth.passwords["ingest"], "wb-y"),
                     ("ingest-1", auth.passwords["ingest"], "smartcity-ingest"),
                     ("ingest-1", auth.passwords["ingest"], "wb-y")]  # fmt: skip
        for user, password, taken in attempts:
            thief = login(auth, clients, user, taken, password)
            assert str(thief.connack) == "Not authorized", (user, taken, thief.connack)
            send()
        # no one was kicked: the device whose id was tried, the ingester (one connection)
        assert not wb_y.disconnected.is_set()
        assert not wb_x.disconnected.is_set()
        assert influx.wait_for_count("wastebin", sent) == sent
        assert ingester.log().count("connected to broker") == 1, ingester.log()
    finally:
        assert ingester.stop() == 0, ingester.log()


def test_a_device_publishes_only_its_own_city_type_and_id_and_reads_only_its_commands(
    auth_broker: AuthBroker, clients: list[Client]
) -> None:
    """Issue 10 item 2: ``smartcity/v1/+/+/%u/telemetry`` let sl-x publish as a bin or a
    charger (stored under the other type, raising its alerts)."""
    auth, city = auth_broker, auth_broker.city
    secret = auth.add_device("streetlight", "sl-x")
    auth.add_device("streetlight", "sl-y")
    sl_x = login(auth, clients, "sl-x", "sl-x", secret)
    for channel in ("telemetry", "events", "status", "health", "cmd_result"):
        assert not sl_x.publish(topic("streetlight", "sl-x", channel, city)).is_failure, channel
        for other in ("wastebin", "evcharger"):
            refused = sl_x.publish(topic(other, "sl-x", channel, city))  # type: ignore[arg-type]
            assert str(refused) == "Not authorized", (other, channel)
        refused = sl_x.publish(topic("streetlight", "sl-y", channel, city))  # type: ignore[arg-type]
        assert str(refused) == "Not authorized", channel
    assert not sl_x.subscribe(topic("streetlight", "sl-x", "cmd", city)).is_failure
    for other in (
        topic("streetlight", "sl-y", "cmd", city),
        f"smartcity/v1/{city}/streetlight/+/cmd",
        "smartcity/#",
        topic("wastebin", "sl-x", "cmd", city),
    ):
        assert sl_x.subscribe(other).is_failure, other
    # a device sends no commands, not even to itself
    assert str(sl_x.publish(topic("streetlight", "sl-y", "cmd", city))) == "Not authorized"


def test_no_account_publishes_under_another_city(
    auth_broker: AuthBroker, clients: list[Client]
) -> None:
    """Issue 10 item 3: a publish on ``smartcity/v1/milano/...`` or ``.../Cremona/...`` got
    PUBACK 0 and was stored nowhere; now the broker refuses it, from every account."""
    auth, city = auth_broker, auth_broker.city
    secret = auth.add_device("streetlight", "sl-x")
    accounts = {a.username: a.clientid for a in service_accounts(city)}
    assert accounts["ingest-2"] == "smartcity-ingest-2"  # --workers: a login per worker
    logins = [login(auth, clients, user, cid) for user, cid in accounts.items()]
    logins.append(login(auth, clients, "sl-x", "sl-x", secret))
    for client in logins:
        assert not client.connack.is_failure
        for elsewhere in ("milano", city.upper(), city.capitalize(), ""):
            for channel in ("telemetry", "status", "cmd", "cmd_result"):
                to = f"smartcity/v1/{elsewhere}/streetlight/sl-x/{channel}"
                assert str(client.publish(to)) == "Not authorized", (client.client, to)
    # what the accounts are for still goes through
    simulator = logins[list(accounts).index("simulator")]
    for kind in ("streetlight", "wastebin", "evcharger"):
        assert not simulator.publish(topic(kind, "any-id", "telemetry", city)).is_failure
    ingest = logins[list(accounts).index("ingest")]
    assert not ingest.publish(DEADLETTER_TOPIC).is_failure
    assert not ingest.publish(f"{SYNC_TOPIC_PREFIX}/smartcity-ingest").is_failure
    assert not ingest.subscribe(f"$share/ingest/smartcity/v1/{city}/+/+/telemetry").is_failure


def test_the_ingesters_sync_topic_is_the_one_it_publishes() -> None:
    assert f"{SYNC_TOPIC_PREFIX}/+" == INGEST_SYNC


def test_a_disabled_client_is_disconnected_at_once_and_a_new_password_replaces_the_old(
    auth_broker: AuthBroker, clients: list[Client]
) -> None:
    auth = auth_broker
    old = auth.add_device("evcharger", "ev-x")
    device = login(auth, clients, "ev-x", "ev-x", old)
    assert not device.connack.is_failure
    broker_accounts.disable_client(auth.admin, "ev-x")
    assert device.disconnected.wait(TIMEOUT), "a disabled client stays connected"
    assert str(login(auth, clients, "ev-x", "ev-x", old).connack) == "Not authorized"
    broker_accounts.enable_client(auth.admin, "ev-x")
    new = dynsec.new_password()
    broker_accounts.set_password(auth.admin, "ev-x", new)
    assert str(login(auth, clients, "ev-x", "ev-x", old).connack) == "Not authorized"
    assert not login(auth, clients, "ev-x", "ev-x", new).connack.is_failure
    assert broker_accounts.get_client(auth.admin, "ev-x")["clientid"] == "ev-x"


def test_an_existing_account_is_refused_and_nothing_half_made_stays(
    auth_broker: AuthBroker, clients: list[Client]
) -> None:
    auth = auth_broker
    first = auth.add_device("streetlight", "sl-x")
    with pytest.raises(broker_accounts.BrokerAccountError, match="already exists"):
        auth.add_device("wastebin", "sl-x")
    # the first account is untouched, its role too
    device = login(auth, clients, "sl-x", "sl-x", first)
    assert not device.publish(topic("streetlight", "sl-x", "telemetry", auth.city)).is_failure
    with pytest.raises(ValueError, match="service account"):
        auth.add_device("streetlight", "observer")
    # an id with a wildcard would be a role over every street light
    for wide in ("+", "#", "sl/x", "sl-+"):
        with pytest.raises(ValueError, match="does not match"):
            auth.add_device("streetlight", wide)
    with pytest.raises(ValueError, match="one topic level"):
        broker_accounts.add_device(auth.admin, "streetlight", "sl-z", "pw", "+")
    bad = broker_accounts.Admin(auth.broker.url, "wrong")
    with pytest.raises(broker_accounts.BrokerAccountError, match="refused the login"):
        broker_accounts.disable_client(bad, "sl-x")


def test_rewriting_the_config_keeps_the_devices_added_at_runtime(
    auth_broker: AuthBroker, clients: list[Client]
) -> None:
    """``smartcity up`` writes the service accounts again on every start; it used to rebuild the
    password file and so delete every device account an operator had added."""
    auth = auth_broker
    secret = auth.add_device("wastebin", "wb-kept")
    auth.broker.stop()
    config = auth.broker.workdir / "dynamic-security.json"
    dynsec.write_config(config, auth.passwords, auth.city)
    for _ in running(auth.broker):
        device = login(auth, clients, "wb-kept", "wb-kept", secret)
        assert not device.connack.is_failure
        to = topic("wastebin", "wb-kept", "telemetry", auth.city)
        assert not device.publish(to).is_failure
    users = [c["username"] for c in json.loads(config.read_text())["clients"]]
    assert sorted(users) == sorted([*SERVICE_LOGINS, "wb-kept"])


def test_secret_files_are_created_owner_only(tmp_path: Path) -> None:
    """Issue 10 item 10: the broker's password file was made 0644 (whatever the umask)."""
    old = os.umask(0)
    try:
        dynsec.write_secret(tmp_path / "secret", "x")
        passwords = {a: dynsec.new_password() for a in SERVICE_ACCOUNTS}
        dynsec.write_config(tmp_path / "dynsec.json", passwords, "cremona")
    finally:
        os.umask(old)
    for name in ("secret", "dynsec.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dynsec.json", "secret"]


def test_the_broker_command_adds_disables_and_refuses_with_reasons(
    auth_broker: AuthBroker, clients: list[Client], tmp_path: Path
) -> None:
    """``smartcity broker``: how docs/edge.md gives a device its login."""
    auth = auth_broker
    admin_file = tmp_path / "admin"
    dynsec.write_secret(admin_file, auth.passwords["smartcity-admin"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTCITY_")}
    env |= {"SMARTCITY_MQTT_URL": auth.broker.url, "SMARTCITY_CITY": auth.city}

    def broker(*args: str) -> Any:
        return run_smartcity("broker", *args, "--admin-password-file", str(admin_file), env=env)

    added = broker("add-device", "wastebin", "wb-cli")
    assert added.returncode == 0, added.stderr
    password = added.stdout.strip().rsplit(" ", 1)[1]
    device = login(auth, clients, "wb-cli", "wb-cli", password)
    assert not device.publish(topic("wastebin", "wb-cli", "telemetry", auth.city)).is_failure
    assert broker("disable", "wb-cli").returncode == 0
    assert device.disconnected.wait(TIMEOUT)
    again = broker("add-device", "wastebin", "wb-cli")
    assert again.returncode == 1
    assert "already exists" in again.stderr
    toaster = broker("add-device", "toaster", "t-1")
    assert toaster.returncode == 1
    assert "unknown device type 'toaster'" in toaster.stderr
    missing = run_smartcity(
        "broker", "disable", "wb-cli", "--admin-password-file", str(tmp_path / "nope"), env=env
    )
    assert missing.returncode == 1
    assert "smartcity up writes it there" in missing.stderr


def test_ingester_workers_each_log_in_with_their_own_login(
    auth_broker: AuthBroker, influx: Influx, clients: list[Client], tmp_path: Path
) -> None:
    """``--workers 2`` on the platform's broker: worker i logs in as ``ingest-i`` (each login is
    bound to one client id), and every reading sent is stored."""
    auth, city = auth_broker, auth_broker.city
    ingester = IngesterProcess(
        smartcity_env(auth.url("ingest"), influx, city), tmp_path / "ingest.log",
        "--spool-dir", str(tmp_path / "spool"), "--metrics-port", "0", "--workers", "2",
    ).start()  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while ingester.log().count("connected to broker") < 2:
            assert time.monotonic() < deadline, ingester.log()
            time.sleep(0.1)
        device = login(auth, clients, "wb-w", "wb-w", auth.add_device("wastebin", "wb-w"))
        for i in range(40):
            reading = good_reading(i, datetime.now(UTC))
            assert not device.publish(
                topic("wastebin", "wb-w", "telemetry", city), reading
            ).is_failure
        assert influx.wait_for_count("wastebin", 40) == 40
        assert "refused" not in ingester.log(), ingester.log()
    finally:
        assert ingester.stop() == 0, ingester.log()


def test_the_ocpp_gateway_speaks_for_chargers_of_its_city_only(
    auth_broker: AuthBroker, clients: list[Client]
) -> None:
    """Issue 14: ``smartcity ocpp`` publishes for every charger connected to it, so its account
    may write the chargers' channels and read their commands, and nothing of other types."""
    city = auth_broker.city
    gateway = login(auth_broker, clients, "ocpp", "ocpp")
    assert not gateway.connack.is_failure
    for channel in ("telemetry", "events", "status", "health", "cmd_result"):
        assert not gateway.publish(topic("evcharger", "ev-any", channel, city)).is_failure
    assert not gateway.subscribe(topic("evcharger", "+", "cmd", city)).is_failure
    assert not gateway.publish(DEADLETTER_TOPIC).is_failure
    for refused in (
        topic("streetlight", "sl-1", "telemetry", city),
        topic("evcharger", "ev-any", "cmd", city),  # commands come from operators, not from it
        topic("evcharger", "ev-any", "telemetry", "milano"),
    ):
        assert str(gateway.publish(refused)) == "Not authorized", refused
    assert gateway.subscribe(topic("streetlight", "+", "cmd", city)).is_failure
