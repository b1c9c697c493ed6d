"""Fixtures: a real Mosquitto, InfluxDB and PostgreSQL on free loopback ports with temporary
folders.

Servers are shared by the session; each test gets its own city (topic level) and database, so
tests never see each other's data. Tests that restart or kill a server start their own.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from smartcity import broker_accounts, dynsec
from smartcity.broker_acl import ADMIN, SERVICE_ACCOUNTS
from smartcity.contract import DEADLETTER_TOPIC
from stack.servers import ChildServer, Influxd, Mosquitto, Postgres, dynsec_config, free_port

S = TypeVar("S", bound=ChildServer)


def running(server: S) -> Iterator[S]:
    """A fixture's body: the server started, then stopped whatever the test did."""
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    workdir = tmp_path_factory.mktemp("mosquitto")
    yield from running(Mosquitto(workdir=workdir, host="127.0.0.1", port=free_port()))


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influxd]:
    workdir = tmp_path_factory.mktemp("influxd")
    yield from running(Influxd(workdir=workdir, host="127.0.0.1", port=free_port()))


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """Started only by tests that ask for it (the registry on PostgreSQL)."""
    workdir = tmp_path_factory.mktemp("postgres")
    yield from running(Postgres(workdir=workdir, host="127.0.0.1", port=free_port()))


@pytest.fixture
def own_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker of this test's own, for tests that restart or stop it."""
    yield from running(
        Mosquitto(workdir=tmp_path / "mosquitto", host="127.0.0.1", port=free_port())
    )


@pytest.fixture
def own_influxd(tmp_path: Path) -> Iterator[Influxd]:
    yield from running(Influxd(workdir=tmp_path / "influxd", host="127.0.0.1", port=free_port()))


@pytest.fixture
def tls_mosquitto(tmp_path: Path) -> Iterator[tuple[Mosquitto, int, Path]]:
    """A broker with a TLS listener whose certificate comes from a CA only we know."""
    work = tmp_path / "tls"
    work.mkdir()
    key, cert = work / "key.pem", work / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    tls_port = free_port()
    extra = f"\nlistener {tls_port} 127.0.0.1\ncertfile {cert}\nkeyfile {key}\n"
    for broker in running(
        Mosquitto(workdir=work, host="127.0.0.1", port=free_port(), extra_config=extra)
    ):
        yield broker, tls_port, cert


@dataclass
class AuthBroker:
    """A broker with the platform's accounts (dynamic security plugin) for one test's city."""

    broker: Mosquitto
    passwords: dict[str, str]
    city: str

    @property
    def admin(self) -> broker_accounts.Admin:
        return broker_accounts.Admin(self.broker.url, self.passwords[ADMIN])

    def url(self, user: str, password: str | None = None) -> str:
        secret = self.passwords[user] if password is None else password
        return f"mqtt://{user}:{secret}@{self.broker.host}:{self.broker.port}"

    def add_device(self, device_type: str, device_id: str) -> str:
        """A device account made as operators make it; its password."""
        password = dynsec.new_password()
        broker_accounts.add_device(self.admin, device_type, device_id, password, self.city)
        return password


def auth_broker_at(workdir: Path, city: str, extra: str = "") -> AuthBroker:
    """An :class:`AuthBroker` in ``workdir``, not started yet."""
    passwords = {a: dynsec.new_password() for a in SERVICE_ACCOUNTS}
    config = workdir / "dynamic-security.json"
    dynsec.write_config(config, passwords, city)
    broker = Mosquitto(
        workdir=workdir,
        host="127.0.0.1",
        port=free_port(),
        extra_config=dynsec_config(config) + extra,
    )
    return AuthBroker(broker, passwords, city)


@pytest.fixture
def auth_broker(tmp_path: Path, city: str) -> Iterator[AuthBroker]:
    """A broker of this test's own with the platform's accounts and ACLs for its city."""
    made = auth_broker_at(tmp_path / "auth-mosquitto", city)
    for _ in running(made.broker):
        yield made


@dataclass
class Influx:
    """Queries against one test's database (values always bound as params, never spliced)."""

    url: str
    db: str

    def query(self, q: str, **params: object) -> list[dict[str, object]]:
        data = {"db": self.db, "q": q}
        if params:
            data["params"] = json.dumps(params)
        body = urllib.parse.urlencode(data).encode()
        with urllib.request.urlopen(f"{self.url}/query", body, timeout=30) as resp:
            result = json.load(resp)["results"][0]
        if "error" in result:
            raise AssertionError(f"InfluxQL error: {result['error']} in {q}")
        rows: list[dict[str, object]] = []
        for series in result.get("series", []):
            for values in series.get("values", []):  # SHOW CONTINUOUS QUERIES: a db with none
                row = dict(zip(series["columns"], values, strict=True))
                row["_measurement"] = series.get("name")  # SHOW RETENTION POLICIES has none
                row.update(series.get("tags", {}))
                rows.append(row)
        return rows

    def count(self, measurement: str, field: str = "seq", **tags: str) -> int:
        where = " AND ".join(f'"{k}" = ${k}' for k in tags)
        q = f'SELECT count("{field}") FROM "{measurement}"' + (f" WHERE {where}" if where else "")
        rows = self.query(q, **tags)
        return int(rows[0]["count"]) if rows else 0  # type: ignore[call-overload]

    def wait_for_count(
        self, measurement: str, expected: int, timeout: float = 60.0, field: str = "seq"
    ) -> int:
        """Poll until ``expected`` points are there (or time runs out); returns the last count."""
        deadline = time.monotonic() + timeout
        got = -1
        while time.monotonic() < deadline:
            got = self.count(measurement, field)
            if got >= expected:
                # settle: make sure nothing more arrives than expected
                time.sleep(0.5)
                return self.count(measurement, field)
            time.sleep(0.2)
        return got


@pytest.fixture
def city() -> str:
    """A city level of this test's own, so concurrent tests never share topics."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def influx(influxd: Influxd, city: str) -> Influx:
    return Influx(influxd.url, f"db_{city}")


def smartcity_env(mqtt_url: str, influx: Influx, city: str) -> dict[str, str]:
    return {
        **os.environ,
        "SMARTCITY_MQTT_URL": mqtt_url,
        "SMARTCITY_INFLUX_URL": influx.url,
        "SMARTCITY_INFLUX_DB": influx.db,
        "SMARTCITY_CITY": city,
    }


class IngesterProcess:
    """``smartcity ingest`` as a real child process, so tests can SIGTERM or SIGKILL it."""

    def __init__(self, env: dict[str, str], log_path: Path, *args: str) -> None:
        self.env = env
        self.args = args
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> IngesterProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "smartcity", "ingest", *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    def kill_all(self) -> None:
        """SIGKILL the ingester and any workers it started (its process group)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def wait_subscribed(self, timeout: float = 30) -> IngesterProcess:
        """Wait for the ingester's subscriptions: messages sent before them are not for it."""
        deadline = time.monotonic() + timeout
        while "connected to broker" not in self.log():
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"ingester exited:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"ingester did not subscribe in {timeout} s:\n{self.log()}")
            time.sleep(0.05)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def ingester(
    mosquitto: Mosquitto, influx: Influx, city: str, tmp_path: Path
) -> Iterator[IngesterProcess]:
    """A running ingester bound to this test's city and database on the shared servers."""
    proc = IngesterProcess(
        smartcity_env(mosquitto.url, influx, city),
        tmp_path / "ingest.log",
        "--client-id",
        f"ingest-{city}",
        "--spool-dir",
        str(tmp_path / "spool"),
        "--metrics-port",
        "0",
    ).start()
    proc.wait_subscribed()
    yield proc
    proc.stop()


def run_smartcity(
    *args: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smartcity", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def stopped_counts(log: str) -> tuple[int, int]:
    """(received, acked) from the ingester's last "ingester stopped" line."""
    found = re.findall(r'msg="ingester stopped" received=(\d+) acked=(\d+)', log)[-1]
    return int(found[0]), int(found[1])


class DeadLetterWatcher:
    """A plain MQTT client collecting what the ingester publishes on the dead-letter topic."""

    def __init__(self, broker: Mosquitto) -> None:
        self.raw: list[bytes] = []
        subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = lambda c, u, m: self.raw.append(m.payload)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(DEADLETTER_TOPIC, qos=1)
        self.client.loop_start()
        assert subscribed.wait(10)

    def wait_for(self, n: int, *cities: str, timeout: float = 30) -> list[dict[str, object]]:
        """The dead-letters of these cities' topics, once there are ``n`` (or time ran out)."""
        deadline = time.monotonic() + timeout
        while len(mine := self.of(*cities)) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        self.client.loop_stop()
        self.client.disconnect()
        return mine

    def of(self, *cities: str) -> list[dict[str, object]]:
        decoded = [json.loads(p) for p in list(self.raw)]
        return [d for d in decoded if str(d["topic"]).split("/")[2] in cities]
