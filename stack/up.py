"""``smartcity up``: the whole pipeline on this machine, with servers it starts itself.

Mosquitto and InfluxDB run as child processes with config and data under ``--data-dir``; the
ingester and a simulated fleet run as child processes of their own (two cores, not one).
Ctrl-C, SIGTERM or SIGHUP, at any moment including start-up, stops what was started in the order
that loses nothing: simulator, API, ingester (which drains and acknowledges), broker, database.
A server that fails to start stops the ones started before it.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field

from simulators.settings import FleetSettings
from smartcity.retention import RetentionSettings
from smartcity.settings import MqttSettings, add_arguments, load, shared

#: InfluxDB's own HTTP and backup RPC ports.
DEFAULT_INFLUX_PORT = 8086
DEFAULT_RPC_PORT = 8088


class UpSettings(FleetSettings, MqttSettings, RetentionSettings):
    section = "up"

    data_dir: Path = Field(
        Path("var"), description="Where servers keep config, data and logs (project-local)."
    )
    seed: int = Field(1, description="Simulator seed.")
    backfill: float = Field(
        3600.0, ge=0, description="Seconds of history the simulator fills in before going live."
    )
    install: bool = Field(
        True, description="Install mosquitto and influxdb from Debian packages when missing."
    )
    simulate: bool = Field(True, description="Run the simulated fleet.")
    chargers_via: Literal["mqtt", "ocpp"] = Field(
        "mqtt",
        description="How the simulated chargers report: mqtt (the contract) or ocpp (OCPP 1.6J "
        "to a `smartcity ocpp` central system started here, as real chargers do).",
    )
    ocpp_port: int = Field(
        9000, ge=1, le=65_535, description="Port of the OCPP central system on 127.0.0.1."
    )
    api: bool = Field(True, description="Serve the API and public page on 127.0.0.1.")
    api_port: int = Field(8000, ge=1, le=65_535, description="Port of the API on 127.0.0.1.")
    # the ingester's own variable, so one setting serves `smartcity ingest` and `up` alike
    ingest_metrics_port: int = shared(
        9108, "Port of the ingester's Prometheus /metrics; 0 = off.", "ingest_metrics_port"
    )
    broker_auth: bool = Field(
        True,
        description="Broker with accounts and ACLs (the dynamic security plugin, as "
        "docker-compose's; smartcity/broker_acl.py); passwords in DATA_DIR/mosquitto/passwords/.",
    )


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "up",
        parents=[common],
        help="run the whole pipeline here: mosquitto, influxdb, ingester, simulated fleet",
        description="Start Mosquitto and InfluxDB on the ports of --mqtt-url and --influx-url "
        "(installing them from Debian packages if missing), then the ingester and a simulated "
        "fleet. Stops everything cleanly on Ctrl-C or SIGTERM.",
    )
    add_arguments(p, UpSettings)
    p.set_defaults(func=run)


def _local_port(url: str, what: str) -> tuple[str, int]:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    if host not in ("127.0.0.1", "localhost", "::1", "0.0.0.0"):
        from smartcity.errors import UserError

        raise UserError(
            f"smartcity up starts {what} on this machine, but the URL names {host}: "
            "use a local address, or run the components one by one against remote servers"
        )
    default = 1883 if what == "mosquitto" else 8086
    return ("127.0.0.1" if host == "localhost" else host), parts.port or default


class Stop(BaseException):
    """A stop signal arrived: unwind, stopping everything started so far.

    A BaseException, like KeyboardInterrupt, so no ``except Exception`` on the way swallows it.
    """


#: SIGHUP too: closing the terminal must not orphan the servers.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopOnSignal:
    """Turns the first stop signal into :class:`Stop`, wherever start-up or the run is.

    Later signals are only reported, so they cannot interrupt the stopping itself.
    """

    def __init__(self) -> None:
        self.stopping = False
        self.previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            self.previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, _frame: object) -> None:
        if not self.stopping:
            self.stopping = True
            raise Stop(signal.Signals(signum).name)
        # os.write, not print: a handler may run in the middle of another print
        os.write(2, b"smartcity up: already stopping; the ingester drains for up to 60 s\n")


def run(args: argparse.Namespace) -> int:
    settings = load(UpSettings, args)
    from smartcity.errors import UserError
    from stack.servers import ServerError, port_in_use

    mqtt_host, mqtt_port = _local_port(settings.mqtt_url, "mosquitto")
    influx_host, influx_port = _local_port(settings.influx_url, "influxd")
    ports = [("MQTT", mqtt_host, mqtt_port, "--mqtt-url"),
             ("InfluxDB", influx_host, influx_port, "--influx-url")]  # fmt: skip
    if influx_port == DEFAULT_INFLUX_PORT:
        ports.append(("InfluxDB's backup RPC", influx_host, DEFAULT_RPC_PORT, "--influx-url"))
    if settings.api:
        ports.append(("the API", "127.0.0.1", settings.api_port, "--api-port"))
    if settings.ingest_metrics_port:
        ports.append(("the ingester's metrics", "127.0.0.1", settings.ingest_metrics_port,
                      "--ingest-metrics-port"))  # fmt: skip
    busy = [  # every one at once: fixing them one per try is tedious
        f"  port {host}:{port} for {what} (another port: {flag})"
        for what, host, port, flag in ports
        if port_in_use(host, port)
    ]
    if busy:
        raise UserError(
            "ports already in use, nothing was started:\n" + "\n".join(busy) + "\nstop what "
            "listens there (another smartcity up?) or choose other ports with those flags"
        )
    lock = lock_data_dir(settings.data_dir)
    guard = StopOnSignal()
    guard.install()  # before anything starts, so no signal can orphan a server
    try:
        with ExitStack() as stack:
            stack.callback(os.close, lock)
            stack.callback(guard.restore)
            try:
                return _up(settings, stack, (mqtt_host, mqtt_port), (influx_host, influx_port))
            finally:
                guard.stopping = True  # from here on, signals cannot interrupt the stopping
                print(
                    "smartcity up: stopping what was started: simulator, API, ingester "
                    "(drains to InfluxDB), mosquitto, influxd...",
                    file=sys.stderr,
                    flush=True,
                )
    except Stop:
        return 0
    except ServerError as exc:
        raise UserError(
            f"{exc}\nNothing is left running; fix that and run smartcity up again."
        ) from None


def lock_data_dir(data_dir: Path) -> int:
    """Hold ``DATA_DIR/up.lock`` for this run: two runs in one folder would share InfluxDB's
    data and the spool, and rewrite each other's broker config and ready file.

    An flock, so it goes with the process however it ends; returns the descriptor to close.
    """
    from smartcity.errors import UserError

    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "up.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise UserError(
            f"the data folder {data_dir} is in use by another smartcity up (process {holder}), "
            "nothing was started: stop that one, or give this one its own folder with "
            "--data-dir DIR (SMARTCITY_UP_DATA_DIR)"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _up(
    settings: UpSettings,
    stack: ExitStack,
    mqtt: tuple[str, int],
    influx: tuple[str, int],
) -> int:
    """Start everything, each stop registered on ``stack`` before its start; then watch.

    ``mqtt`` and ``influx`` are the (host, port) the servers listen on, checked free by
    :func:`run`."""
    from smartcity.errors import UserError
    from stack.servers import Influxd, Mosquitto, install_missing

    data = settings.data_dir.resolve()
    registry_url = f"sqlite:///{data}/registry.db"
    # before the ingester starts: it reads the registry once at start, then every minute
    registered = prepare_registry(registry_url, settings)
    if settings.install:
        install_missing()
    passwords = broker_passwords(data / "mosquitto") if settings.broker_auth else {}
    auth = broker_accounts(data / "mosquitto", passwords, settings.city) if passwords else ""
    broker = Mosquitto(workdir=data / "mosquitto", host=mqtt[0], port=mqtt[1], extra_config=auth)
    # the backup RPC on InfluxDB's own 8088 beside 8086; beside another port, on a free one
    # (the banner says which): a neighbour of a free port is often some client's port
    rpc = DEFAULT_RPC_PORT if influx[1] == DEFAULT_INFLUX_PORT else 0
    db = Influxd(workdir=data / "influxdb", host=influx[0], port=influx[1], rpc_port=rpc)
    stack.callback(db.stop)  # stops run last first: the servers go after every client
    stack.callback(broker.stop)
    broker.start()
    db.start()
    from stack.storage_cli import init_storage

    # retention and rollups before anything writes (idempotent, keeps the data of a former run)
    print(f"storage: {init_storage(settings)}", flush=True)

    env = {
        **os.environ,
        "SMARTCITY_MQTT_URL": settings.mqtt_url,
        "SMARTCITY_INFLUX_URL": settings.influx_url,
        "SMARTCITY_INFLUX_DB": settings.influx_db,
        "SMARTCITY_CITY": settings.city,
        "SMARTCITY_INGEST_SPOOL_DIR": str(data / "spool"),
        "SMARTCITY_INGEST_REGISTRY_URL": registry_url,
        "SMARTCITY_API_REGISTRY_URL": registry_url,
    }
    me = [sys.executable, "-m", "smartcity"]
    ready = data / "ingest.ready"
    ready.unlink(missing_ok=True)
    ingester = _spawn(
        stack,
        [*me, "ingest", "--ready-file", str(ready), "--metrics-port",
         str(settings.ingest_metrics_port)],
        _as(env, "ingest", passwords),
    )  # fmt: skip
    children = [("ingester", ingester)]
    if settings.api:
        api = [*me, "api", "--host", "127.0.0.1", "--port", str(settings.api_port)]
        # commands go out over the broker's api account; device credentials
        # (/v1/devices/{id}/credentials) change the broker as its admin
        admin_file = {"SMARTCITY_API_BROKER_ADMIN_PASSWORD_FILE": str(data / "mosquitto" /
                      "passwords" / "smartcity-admin")} if passwords else {}  # fmt: skip
        api_env = _as(env, "api", passwords) | admin_file
        children.append(("API", _spawn(stack, api, api_env)))
    if settings.simulate:
        # on a new broker the ingester's session does not exist until it subscribes, and
        # readings published before that would reach no one
        _wait_until_ready(ingester, ready)
        sim = [
            *me, "simulate", "--fleet", settings.fleet_text(), "--seed", str(settings.seed),
            "--backfill", str(settings.backfill), "--speed", "0", "--no-progress",
        ]  # fmt: skip
        if settings.chargers_via == "ocpp":
            gateway = [
                *me, "ocpp", "--host", "127.0.0.1", "--port", str(settings.ocpp_port),
                "--registry-url", registry_url, "--state-dir", str(data / "ocpp"),
            ]  # fmt: skip
            children.append(
                ("OCPP central system", _spawn(stack, gateway, _as(env, "ocpp", passwords)))
            )
            _wait_for_port("127.0.0.1", settings.ocpp_port, children[-1][1])
            sim += ["--via", "ocpp", "--ocpp-url", f"ws://127.0.0.1:{settings.ocpp_port}/ocpp",
                    "--ocpp-passwords", str(data / "ocpp" / "passwords.json")]  # fmt: skip
        children.append(("simulator", _spawn(stack, sim, _as(env, "simulator", passwords))))

    print(banner(settings, broker, db, registered, passwords), flush=True)
    while True:
        for name, child in children:
            if child.poll() is not None:
                raise UserError(
                    f"the {name} exited with status {child.returncode}, so everything was "
                    f"stopped; its messages are above (server logs under {data}): fix the "
                    "cause and run smartcity up again"
                )
        time.sleep(1.0)


def _wait_until_ready(ingester: subprocess.Popen[bytes], ready: Path, timeout: float = 120) -> None:
    from smartcity.errors import UserError

    deadline = time.monotonic() + timeout
    while not ready.exists():
        if ingester.poll() is not None or time.monotonic() > deadline:
            exited = ingester.poll() is not None
            state = "exited" if exited else f"did not subscribe in {timeout:.0f} s"
            raise UserError(
                f"the ingester {state}, so the simulator was not started and everything was "
                "stopped; its messages are above: fix the cause and run smartcity up again"
            )
        time.sleep(0.1)


def _wait_for_port(
    host: str, port: int, child: subprocess.Popen[bytes], timeout: float = 60
) -> None:
    """Until a child server accepts connections (the simulator must not connect before)."""
    import socket

    from smartcity.errors import UserError

    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), 1).close()
            return
        except OSError:
            if child.poll() is not None or time.monotonic() > deadline:
                raise UserError(
                    f"the OCPP central system did not listen on {host}:{port}, so everything "
                    "was stopped; its messages are above (is the port taken? --ocpp-port)"
                ) from None
            time.sleep(0.1)


def broker_passwords(workdir: Path) -> dict[str, str]:
    """A password per service account (the admin's too), made on the first run and kept
    (owner-only files) after it."""
    from smartcity.broker_acl import SERVICE_ACCOUNTS
    from smartcity.dynsec import new_password, write_secret

    folder = workdir / "passwords"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    passwords = {}
    for account in SERVICE_ACCOUNTS:
        path = folder / account
        if not path.exists():
            write_secret(path, new_password())
        passwords[account] = path.read_text().strip()
    return passwords


def broker_accounts(workdir: Path, passwords: dict[str, str], city: str) -> str:
    """The broker's config lines for the dynamic security plugin, its file written first.

    The service accounts and their roles are written again on every start (a new city, a
    changed role); devices added to the broker since are kept.
    """
    from smartcity.dynsec import write_config
    from smartcity.errors import UserError
    from stack.servers import dynsec_config

    config_file = workdir / "dynamic-security.json"
    try:
        write_config(config_file, passwords, city)
    except ValueError as exc:  # a city that is not one topic level
        raise UserError(f"{exc}: choose another --city") from None
    # the password and ACL files of the versions before the plugin: world-readable hashes
    shutil.rmtree(workdir / "auth", ignore_errors=True)
    return dynsec_config(config_file)


def _as(env: dict[str, str], account: str, passwords: dict[str, str]) -> dict[str, str]:
    """``env`` with the broker URL carrying ``account``'s login (unchanged without passwords)."""
    if not passwords:
        return env
    url = urlsplit(env["SMARTCITY_MQTT_URL"])
    netloc = f"{account}:{passwords[account]}@{url.hostname}:{url.port or 1883}"
    return {**env, "SMARTCITY_MQTT_URL": url._replace(netloc=netloc).geturl()}


def _spawn(stack: ExitStack, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A child in its own process group, so a Ctrl-C reaches only us and we stop it in order."""
    child = subprocess.Popen(argv, env=env, process_group=0)
    stack.callback(_terminate, child)
    return child


def prepare_registry(url: str, settings: UpSettings) -> int:
    """Create the registry, with the simulated fleet registered where the simulator puts it.

    The ingester tags points with registered zones and flags unregistered devices, so without
    this every simulated device would be flagged. Simulated devices get their type, zone and
    place again on every start (the seed and counts may have changed), keeping what an operator
    set on them (a bin's threshold, a name); other devices are left as they are.
    """
    from sqlalchemy.orm import Session

    from api.registry.crud import upsert_devices
    from api.schemas.devices import DeviceCreate
    from simulators.fleet import build_fleet
    from smartcity import audit
    from smartcity.registry.db import make_engine

    engine = make_engine(url)  # creates the file and the tables
    if not settings.simulate:
        return 0
    counts = settings.counts()
    fleet = build_fleet(settings.seed, counts)
    devices = (
        DeviceCreate(device_id=d.device_id, device_type=d.device_type.name,
                     zone=d.placement.zone, lat=d.placement.lat, lon=d.placement.lon)
        for d in fleet
    )  # fmt: skip
    with Session(engine) as session:
        # stored by upsert_devices' commit, with the registration it records
        audit.record(session, actor=audit.cli_actor(), action="device.register_fleet",
                     detail=counts)  # fmt: skip
        count = upsert_devices(session, devices)
        if settings.chargers_via == "ocpp":
            chargers = [d.device_id for d in fleet if d.device_type.name == "evcharger"]
            ocpp_passwords(session, chargers, settings.data_dir.resolve() / "ocpp")
    engine.dispose()
    return count


def ocpp_passwords(session: Any, charger_ids: list[str], folder: Path) -> None:
    """New OCPP passwords for the simulated chargers: their hashes in the registry, the
    passwords in an owner-only file for the simulator (``--ocpp-passwords``)."""
    import json

    from smartcity.charger_auth import hash_password, new_password
    from smartcity.dynsec import write_secret
    from smartcity.registry.models import Device

    passwords = {}
    for device_id in charger_ids:
        device = session.get(Device, device_id)
        passwords[device_id] = new_password()
        device.ocpp_password_hash = hash_password(passwords[device_id])
    session.commit()
    folder.mkdir(parents=True, exist_ok=True)
    write_secret(folder / "passwords.json", json.dumps(passwords))


def _terminate(child: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def banner(
    settings: UpSettings,
    broker: Any,
    db: Any,
    registered: int = 0,
    passwords: dict[str, str] | None = None,
) -> str:
    from smartcity.devices import DEVICE_TYPES

    q = f"SELECT count(seq) FROM {', '.join(t.measurement() for t in DEVICE_TYPES.values())}"
    fleet = ", ".join(f"{n} {t}" for t, n in settings.counts().items())
    api = f"http://127.0.0.1:{settings.api_port}"
    login = (
        f' -u observer -P "$(cat {settings.data_dir}/mosquitto/passwords/observer)" -i observer'
        if passwords
        else ""
    )
    return f"""
Cremona smart-city pipeline is up.
  MQTT broker   {broker.url}   (config {broker.workdir}/mosquitto.conf, log {broker.log_path})
  InfluxDB      {db.url}   database '{settings.influx_db}' (data in {db.workdir})
                backup RPC {db.host}:{db.rpc_port} (smartcity backup --influx-rpc)
  ingester      smartcity ingest (acknowledges what is stored; spool {settings.data_dir}/spool)
  api           {f"{api}/ (catalogue page), {api}/docs (API)" if settings.api else "off"}
  registry      {settings.data_dir}/registry.db ({registered} simulated devices registered)
  simulator     {fleet} (chargers via {settings.chargers_via}), seed {settings.seed}
Watch it:
  curl -s {db.url}/query --data-urlencode 'db={settings.influx_db}' --data-urlencode 'q={q}'
  mosquitto_sub -h {broker.host} -p {broker.port}{login} -t 'smartcity/v1/#' -v
Stop with Ctrl-C.
"""
