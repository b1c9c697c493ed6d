"""The API tests' city: one simulated night ingested into a real InfluxDB, shared by the session.

The simulator runs through the real MQTT broker and ingester with a fixed start and seed; a few
hand-made messages add a device that went silent and one whose Last Will fired. Each test builds
its own app (own registry file) against that database, with the clock set to the end of the data.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from api.app import create_app
from api.security import create_key
from api.settings import ApiSettings
from simulators.publisher import AckingPublisher
from smartcity import dynsec
from smartcity.broker_acl import ADMIN
from smartcity.contract import Status, encode, encode_telemetry, topic
from smartcity.devices import DEVICE_TYPES
from smartcity.registry.db import make_engine
from smartcity.registry.models import Device
from stack.servers import Influxd, Mosquitto, Postgres, free_port

from ..conftest import (
    Influx,
    IngesterProcess,
    auth_broker_at,
    run_smartcity,
    running,
    smartcity_env,
)
from . import city as c


@dataclass(frozen=True)
class CityData:
    influx: Influx
    sent: c.Sent


@pytest.fixture(scope="session")
def city_data(
    mosquitto: Mosquitto, influxd: Influxd, tmp_path_factory: pytest.TempPathFactory
) -> CityData:
    name = "apicity"
    influx = Influx(influxd.url, f"db_{name}")
    env = smartcity_env(mosquitto.url, influx, name)
    ingester = IngesterProcess(
        env,
        tmp_path_factory.mktemp("api-ingest") / "ingest.log",
        "--client-id", f"ingest-{name}", "--share-group", f"g{name}",
    ).start().wait_subscribed()  # fmt: skip
    sent = c.everything()
    try:
        done = run_smartcity(
            "simulate", *c.SIM_ARGS, "--messages", str(sent.simulated_messages), env=env
        )
        assert done.returncode == 0, done.stderr
        pub = AckingPublisher(mosquitto.url, f"pub-{name}")
        pub.connect()
        for device_id, kind in ((c.GONE, "streetlight"), (c.LAST_WILL, "evcharger")):
            pub.publish(
                topic(kind, device_id, "telemetry", name),  # type: ignore[arg-type]
                encode_telemetry(sent.readings[device_id], sent.zone[device_id]),
            )
        state, when = sent.status[c.LAST_WILL]
        will = Status(v=1, state=state, ts=when, zone=sent.zone[c.LAST_WILL])  # type: ignore[arg-type]
        pub.publish(topic("evcharger", c.LAST_WILL, "status", name), encode(will), retain=True)
        assert pub.drain(30)
        pub.close()
        readings = sum(len(rs) for rs in sent.readings.values())
        measured = sum(
            influx.wait_for_count(m, sum(len(rs) for d, rs in sent.readings.items()
                                         if sent.kind[d] == m))
            for m in DEVICE_TYPES
        )  # fmt: skip
        assert measured == readings
        assert influx.wait_for_count("device_status", len(sent.status), field="state") == len(
            sent.status
        )
    finally:
        ingester.stop(signal.SIGTERM)
    return CityData(influx, sent)


#: The registry backends a test can run on; parametrize ``registry_url`` indirectly with them.
REGISTRY_BACKENDS = ("sqlite", "postgresql")
ON_EVERY_REGISTRY_BACKEND = pytest.mark.parametrize(
    "registry_url", REGISTRY_BACKENDS, indirect=True
)


@pytest.fixture
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """This test's own, empty registry: a SQLite file, or with the ``postgresql`` parameter a
    fresh database on the session's PostgreSQL server (started on first use)."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/registry.db"
    assert backend == "postgresql", backend
    server: Postgres = request.getfixturevalue("postgres")
    database = f"registry_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server.url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{database}"'))  # a name of our own making
    finally:
        admin.dispose()
    return server.url(database)


def api_settings(data: CityData, tmp_path: Path, **overrides: object) -> ApiSettings:
    values: dict[str, object] = {
        "influx_url": data.influx.url,
        "influx_db": data.influx.db,
        "registry_url": f"sqlite:///{tmp_path}/registry.db",
        "as_of": c.AS_OF,
        "kpi_cache_seconds": 0,
        "rate_limit": 100_000,
        "offline_after_minutes": c.OFFLINE_AFTER.total_seconds() / 60,
        "bin_threshold": c.THRESHOLD,
        **overrides,
    }
    return ApiSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(city_data: CityData, tmp_path: Path, registry_url: str) -> ApiSettings:
    return api_settings(city_data, tmp_path, registry_url=registry_url)


@asynccontextmanager
async def serve(settings: ApiSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process, its lifespan run, behind an HTTP client."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client


@pytest.fixture
async def client(settings: ApiSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(settings) as test_client:
        yield test_client


@pytest.fixture
def sent(city_data: CityData) -> c.Sent:
    return city_data.sent


@contextlib.contextmanager
def registry_session(url: str) -> Iterator[Session]:
    """A session on the registry at ``url``; its engine disposed after, so no connection is
    left open to a PostgreSQL registry."""
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def make_key(settings: ApiSettings, scope: str) -> str:
    with registry_session(settings.registry_url) as session:
        return create_key(session, f"test {scope}", scope)[1]


@pytest.fixture
def write_key(settings: ApiSettings) -> str:
    return make_key(settings, "write")


@pytest.fixture
def read_key(settings: ApiSettings) -> str:
    return make_key(settings, "read")


@pytest.fixture
def admin_key(settings: ApiSettings) -> str:
    return make_key(settings, "admin")


@contextlib.contextmanager
def api_process(settings: ApiSettings, workdir: Path, env: dict[str, str]) -> Iterator[str]:
    """``smartcity api`` as a real process (uvicorn and all) on a free port; yields its URL.

    The database and registry come from ``settings``; ``env`` adds the API's other settings.
    """
    port = free_port()
    full_env = {
        **os.environ,
        "SMARTCITY_INFLUX_URL": settings.influx_url,
        "SMARTCITY_INFLUX_DB": settings.influx_db,
        "SMARTCITY_API_REGISTRY_URL": settings.registry_url,
        "SMARTCITY_API_AS_OF": c.AS_OF.isoformat(),
        "SMARTCITY_API_KPI_CACHE_SECONDS": "0",
        **env,
    }
    log_path = workdir / f"api-{port}.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "smartcity", "api", "--host", "127.0.0.1", "--port", str(port)],
        env=full_env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/v1/health", timeout=2).status_code in (200, 429):
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(log_path.read_text())
        time.sleep(0.1)
    try:
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down cleanly, then re-raises SIGTERM as its exit status
        assert proc.wait(30) in (0, -signal.SIGTERM), log_path.read_text()


@dataclass(frozen=True)
class ApiServer:
    url: str
    write_key: str
    admin_key: str
    settings: ApiSettings


@pytest.fixture(scope="session")
def api_server(
    city_data: CityData, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    """``smartcity api`` as a real process on a free port, its registry holding the fleet."""
    workdir = tmp_path_factory.mktemp("api-server")
    settings = api_settings(city_data, workdir, rate_limit=1_000_000)
    with registry_session(settings.registry_url) as session:
        key = create_key(session, "tests", "write")[1]
        admin = create_key(session, "tests admin", "admin")[1]
        now = datetime.now(UTC)
        sent = city_data.sent
        for d, (lat, lon) in sent.place.items():
            session.add(Device(device_id=d, device_type=sent.kind[d], zone=sent.zone[d], lat=lat,
                               lon=lon, created_at=now, updated_at=now))  # fmt: skip
        session.commit()
    # a broker with the platform's accounts, so device credentials reach their handlers
    broker = auth_broker_at(workdir / "broker", "apicity")
    admin_file = workdir / "broker-admin"
    dynsec.write_secret(admin_file, broker.passwords[ADMIN])
    env = {
        "SMARTCITY_API_RATE_LIMIT": "1000000",
        "SMARTCITY_API_RATE_LIMIT_KEYED": "1000000",
        "SMARTCITY_MQTT_URL": broker.broker.url,
        "SMARTCITY_CITY": "apicity",
        "SMARTCITY_API_BROKER_ADMIN_PASSWORD_FILE": str(admin_file),
    }
    for _ in running(broker.broker):
        with api_process(settings, workdir, env) as url:
            yield ApiServer(url, key, admin, settings)
