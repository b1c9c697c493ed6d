"""The docker-compose stack, checked without a container engine (none can run here).

* ``docker-compose config`` (Debian's docker-compose, installed by ``scripts/bootstrap test``)
  validates the file and resolves it; the resolved services are then checked against the rest
  of the repository: healthchecks, the shared broker limits, Grafana's provisioning mounts, the
  commands the image runs.
* The compose broker's own configuration (its config file, the accounts scripts/compose-env
  seeds, the script that copies the seed into its volume) runs on the real Mosquitto here, with
  the real ingester and simulator logging in as their compose accounts, so the ACLs are shown to
  let the pipeline through and to keep devices apart.

Not checked, for want of an engine: that the images pull and build, that the containers start
in order and turn healthy, and the compose-only paths inside them.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from api.settings import DEFAULT_ASSETS, ApiSettings
from grafana import provisioning
from ingest.service import SYNC_TOPIC_PREFIX
from smartcity import broker_accounts, dynsec
from smartcity.broker_acl import ADMIN, SERVICE_ACCOUNTS, SERVICE_LOGINS
from smartcity.contract import topic
from smartcity.devices import DEVICE_TYPES
from smartcity.devices.base import point_time_ns
from smartcity.lineprotocol import line
from stack.cli import build_parser
from stack.servers import (
    BROKER_LIMITS,
    Influxd,
    Mosquitto,
    dynsec_plugin,
    find_binary,
    free_port,
)

from .conftest import AuthBroker, Influx, IngesterProcess, run_smartcity, smartcity_env
from .test_cli import subcommands
from .test_pipeline import good_reading

ROOT = Path(__file__).parents[1]
DEPLOY = ROOT / "deploy/mosquitto"
SERVICES = {"mosquitto", "influxdb", "grafana", "ingester", "api", "simulator", "storage", "ocpp"}


def compose_config(env_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shutil.which("docker-compose") or "docker-compose", "--env-file", str(env_file),
         "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True, text=True, check=False, timeout=120, cwd=ROOT,
    )  # fmt: skip


def env_file(tmp_path: Path, city: str = "cremona") -> Path:
    """``scripts/compose-env`` into ``tmp_path``: the .env, and the broker's seed beside it."""
    path = tmp_path / "compose.env"
    out = subprocess.run(
        [str(ROOT / "scripts/compose-env"), str(path), str(tmp_path / "seed.json")],
        capture_output=True, text=True, check=False, env={**os.environ, "SMARTCITY_CITY": city},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return path


def secrets(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = compose_config(env_file(tmp_path_factory.mktemp("compose")))
    assert out.returncode == 0, out.stderr
    data: dict[str, Any] = yaml.safe_load(out.stdout)
    return data


def test_compose_file_is_valid_and_holds_the_whole_stack(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert set(services) == SERVICES
    assert services["mosquitto"]["image"] == "eclipse-mosquitto:2"
    assert services["influxdb"]["image"].startswith("influxdb:1.")
    for name, service in services.items():
        if service.get("restart") != "no":  # a one-shot (storage init) is done, not healthy
            assert service["healthcheck"]["test"], f"{name} has no healthcheck"
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes beyond localhost"


def test_secrets_are_required_not_defaulted(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    out = compose_config(empty)
    assert out.returncode != 0
    assert "scripts/compose-env" in out.stderr


def test_the_image_runs_commands_the_cli_has(resolved: dict[str, Any]) -> None:
    known = set(subcommands())
    for name in ("storage", "ingester", "simulator", "api", "ocpp"):
        service = resolved["services"][name]
        assert service["build"]["context"] == str(ROOT)
        command = service["command"][0]
        assert command in known, (name, command)
        build_parser().parse_args(service["command"])  # its flags too (exits on a bad one)
        check = service.get("healthcheck", {}).get("test", [])
        if check[1:3] == ["python", "/app/deploy/healthcheck.py"]:
            assert (ROOT / "deploy/healthcheck.py").is_file()
    assert "[server]" in (ROOT / "Dockerfile").read_text()


@dataclass
class Stage:
    """One ``FROM`` stage of the Dockerfile: its name and its instructions, in order."""

    name: str
    instructions: list[tuple[str, str]]

    def args(self, instruction: str) -> list[str]:
        return [a for i, a in self.instructions if i == instruction]


def dockerfile_stages(path: Path = ROOT / "Dockerfile") -> list[Stage]:
    """The Dockerfile as stages; continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    stages: list[Stage] = []
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        instruction, _, args = raw.strip().partition(" ")
        if instruction.upper() == "FROM":
            name = args.split(" AS ")[-1].strip() if " AS " in args else str(len(stages))
            stages.append(Stage(name, []))
        stages[-1].instructions.append((instruction.upper(), args.strip()))
    return stages


def test_the_image_carries_the_public_page_assets_where_the_api_looks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Read, not built (no engine): a stage runs `npm ci` on api/web's lock file, and the final
    stage copies bootstrap-italia's dist from it to the folder the API is told to serve."""
    *builders, final = dockerfile_stages()
    (web,) = [b for b in builders if any("npm ci" in a for a in b.args("RUN"))]
    (workdir,) = web.args("WORKDIR")
    assert "api/web/package.json api/web/package-lock.json ./" in web.args("COPY")
    copies = [a.split() for a in final.args("COPY") if a.startswith(f"--from={web.name} ")]
    ((_, source, target),) = copies
    # the copied folder is bootstrap-italia's dist, as npm ci lays it out under api/web here
    local = ROOT / "api/web" / Path(source).relative_to(workdir)
    assert local == DEFAULT_ASSETS
    page = (ROOT / "api/templates/index.html").read_text()
    for asset in re.findall(r'"/static/bootstrap-italia/([^"]+\.(?:css|js))"', page):
        assert (local / asset).is_file(), asset  # installed by scripts/bootstrap
    env = dict(a.split("=", 1) for a in final.args("ENV") if a.startswith("SMARTCITY_"))
    monkeypatch.setenv("SMARTCITY_API_ASSETS_DIR", env["SMARTCITY_API_ASSETS_DIR"])
    assert ApiSettings().assets_dir == Path(target)
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "api/web/node_modules" in ignored  # the build context never carries a local copy


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Bind mounts by target; docker-compose 1.x prints them as ``source:target[:mode]``."""
    out = {}
    for volume in service["volumes"]:
        source, target = volume.split(":")[:2]
        if source.startswith("/"):
            out[target] = Path(source)
    return out


def test_grafana_is_provisioned_from_the_repository(resolved: dict[str, Any]) -> None:
    grafana = mounts(resolved["services"]["grafana"])
    assert grafana["/etc/grafana/provisioning"] == ROOT / "grafana/provisioning"
    assert grafana[provisioning.DASHBOARDS_MOUNT] == ROOT / "grafana/dashboards"
    home = resolved["services"]["grafana"]["environment"][
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"
    ]
    assert (
        ROOT / "grafana/dashboards" / Path(home).relative_to(provisioning.DASHBOARDS_MOUNT)
    ).is_file()


def test_the_broker_runs_the_same_limits_as_the_local_run(resolved: dict[str, Any]) -> None:
    broker = mounts(resolved["services"]["mosquitto"])
    conf = (DEPLOY / "mosquitto.conf").read_text()
    (include,) = re.findall(r"^include_dir (\S+)", conf, re.M)
    limits = [target for target, source in broker.items() if source == BROKER_LIMITS]
    assert limits == [f"{include}/limits.conf"]
    assert broker["/mosquitto/config/mosquitto.conf"] == DEPLOY / "mosquitto.conf"


def verifies(entry: dict[str, Any], password: str) -> bool:
    """Whether a client of the plugin's file has ``password`` (its own hashing, PBKDF2-SHA512)."""
    digest = hashlib.pbkdf2_hmac(
        "sha512", password.encode(), base64.b64decode(entry["salt"]), entry["iterations"], 64
    )
    return base64.b64encode(digest).decode() == entry["password"]


def test_every_service_account_has_a_secret_and_the_broker_its_account(
    resolved: dict[str, Any],
) -> None:
    broker = resolved["services"]["mosquitto"]
    (seed,) = [v.split(":")[0] for v in broker["volumes"] if "/mosquitto/seed/" in v]
    values = secrets(Path(seed).with_name("compose.env"))
    clients = {c["username"]: c for c in json.loads(Path(seed).read_text())["clients"]}
    assert set(clients) == set(SERVICE_LOGINS)
    for account in SERVICE_ACCOUNTS:
        assert verifies(clients[account], values[dynsec.env_name(account)]), account
    # the ingester's workers log in with its password, each bound to its own client id
    ingest = values[dynsec.env_name("ingest")]
    assert verifies(clients["ingest-2"], ingest)
    assert clients["ingest-2"]["clientid"] == "smartcity-ingest-2"
    for name in ("ingester", "simulator"):
        url = resolved["services"][name]["environment"]["SMARTCITY_MQTT_URL"]
        user, password = re.fullmatch(r"mqtt://(\w+):([^@]+)@mosquitto:1883", url).groups()  # type: ignore[union-attr]
        assert user in SERVICE_ACCOUNTS
        assert values[dynsec.env_name(user)] == password
    assert broker["environment"]["MQTT_PASSWORD_MONITOR"] == values["MQTT_PASSWORD_MONITOR"]
    # the image's plugin, and the file the seed script fills
    conf = (DEPLOY / "mosquitto.conf").read_text()
    assert "plugin /usr/lib/mosquitto_dynamic_security.so\n" in conf
    (live,) = re.findall(r"^plugin_opt_config_file (\S+)$", conf, re.M)
    assert live.startswith("/mosquitto/data/")  # the volume: kept across restarts
    assert f'live="${{MQTT_DYNSEC_FILE:-{live}}}"' in (DEPLOY / "dynsec-seed.sh").read_text()


def test_compose_env_writes_every_secret_compose_needs_owner_only_and_keeps_existing_ones(
    tmp_path: Path, resolved: dict[str, Any]
) -> None:
    env = tmp_path / ".env"
    env.write_text("MQTT_PASSWORD_INGEST=kept\n")
    seed = tmp_path / "var" / "seed.json"
    subprocess.run(["bash", str(ROOT / "scripts" / "compose-env"), str(env), str(seed)], check=True)
    values = secrets(env)
    assert values["MQTT_PASSWORD_INGEST"] == "kept"
    assert set(resolved["services"]["mosquitto"]["environment"]) <= set(values)
    assert "GRAFANA_ADMIN_PASSWORD" in values
    assert values["MQTT_DYNSEC_SEED"] == str(seed)
    assert all(values.values())
    ingest = next(c for c in json.loads(seed.read_text())["clients"] if c["username"] == "ingest")
    assert verifies(ingest, "kept")
    admin = seed.with_name(ADMIN).read_text().strip()
    assert admin == values[dynsec.env_name(ADMIN)]
    # issue 10 item 10: every secret file owner-only (the .env was 0644 as written above)
    for path in (env, seed, seed.with_name(ADMIN)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_the_api_sends_commands_as_its_own_account_and_shares_its_registry_with_the_ingester(
    resolved: dict[str, Any],
) -> None:
    api, ingester = resolved["services"]["api"], resolved["services"]["ingester"]
    # commands go out over the API's own broker account, connected on the first command (so
    # no start-up order on the broker)
    assert "api" in SERVICE_ACCOUNTS
    assert urllib.parse.urlsplit(api["environment"]["SMARTCITY_MQTT_URL"]).username == "api"
    assert "mosquitto" not in api.get("depends_on", {})

    def registry_file(service: dict[str, Any], variable: str) -> tuple[str, Path, str]:
        """(named volume, path of the SQLite file inside it, mount mode)."""
        path = Path(service["environment"][variable].removeprefix("sqlite:///"))
        for volume in service["volumes"]:
            source, target, *mode = volume.split(":")
            if not source.startswith("/") and path.is_relative_to(target):
                return source, path.relative_to(target), (mode or ["rw"])[0]
        raise AssertionError(f"{path} is on no named volume of the service")

    api_volume, api_file, api_mode = registry_file(api, "SMARTCITY_API_REGISTRY_URL")
    ingest_volume, ingest_file, ingest_mode = registry_file(
        ingester, "SMARTCITY_INGEST_REGISTRY_URL"
    )
    assert api_volume == ingest_volume in resolved["volumes"]
    assert api_file == ingest_file
    # read-write for both: a SQLite reader in WAL mode writes the shared-memory index
    assert (api_mode, ingest_mode) == ("rw", "rw")


# -- the compose broker configuration on the real Mosquitto ---------------------------------


@dataclass(kw_only=True)
class ComposeBroker(Mosquitto):
    """Mosquitto started from deploy/mosquitto/mosquitto.conf, its container paths mapped to
    a temporary folder laid out as docker-compose mounts it, its accounts seeded by
    scripts/compose-env and deploy/mosquitto/dynsec-seed.sh."""

    seed: Path

    def write_config(self) -> None:
        config = self.workdir / "config"
        data = self.workdir / "data"
        (config / "conf.d").mkdir(parents=True, exist_ok=True)
        data.mkdir(exist_ok=True)
        shutil.copy(BROKER_LIMITS, config / "conf.d/limits.conf")
        live = data / "dynamic-security.json"
        subprocess.run(
            ["sh", str(DEPLOY / "dynsec-seed.sh")],
            env={"PATH": "/usr/bin:/bin", "MQTT_DYNSEC_SEED_FILE": str(self.seed),
                 "MQTT_DYNSEC_FILE": str(live)},
            check=True,
        )  # fmt: skip
        assert stat.S_IMODE(live.stat().st_mode) == 0o600
        text = (DEPLOY / "mosquitto.conf").read_text()
        text = text.replace("/mosquitto/config/", f"{config}/").replace(
            "/mosquitto/data/", f"{data}/"
        )
        text = text.replace("/usr/lib/mosquitto_dynamic_security.so", dynsec_plugin())
        text = text.replace("listener 1883\n", f"listener {self.port} {self.host}\n")
        (self.workdir / "mosquitto.conf").write_text(text + f"user {getpass.getuser()}\n")


#: The compose broker's city: a test city of its own (the seed confines writes to one city).
CITY = f"t{uuid.uuid4().hex[:10]}"
DEVICE, OTHER = "wb-campo-1", "wb-campo-2"  # not ids the simulator uses
COMMANDER = "test-commands"


@pytest.fixture(scope="module")
def compose_secrets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("compose-secrets")
    values = secrets(env_file(folder, CITY))
    values["seed"] = str(folder / "seed.json")
    return values


@pytest.fixture(scope="module")
def passwords(compose_secrets: dict[str, str]) -> dict[str, str]:
    return {a: compose_secrets[dynsec.env_name(a)] for a in SERVICE_ACCOUNTS}


@pytest.fixture(scope="module")
def compose_broker(
    tmp_path_factory: pytest.TempPathFactory, compose_secrets: dict[str, str]
) -> Iterator[ComposeBroker]:
    broker = ComposeBroker(
        workdir=tmp_path_factory.mktemp("compose-broker"),
        host="127.0.0.1",
        port=free_port(),
        seed=Path(compose_secrets["seed"]),
    )
    broker.start()
    yield broker
    broker.stop()


def url(broker: Mosquitto, user: str, password: str) -> str:
    return f"mqtt://{user}:{password}@{broker.host}:{broker.port}"


def connect(
    broker: Mosquitto, user: str | None, password: str | None, client_id: str | None = None
) -> tuple[paho.Client, Any]:
    """A connection; each login is bound to one client id, its username (the ingester's: any)."""
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or user or f"c-{uuid.uuid4().hex[:8]}",
        protocol=paho.MQTTv5,
    )
    if user:
        client.username_pw_set(user, password)
    answered = threading.Event()
    result: dict[str, Any] = {}

    def on_connect(c: paho.Client, u: object, flags: object, rc: Any, props: object) -> None:
        result["rc"] = rc
        answered.set()

    client.on_connect = on_connect
    client.connect(broker.host, broker.port)
    client.loop_start()
    assert answered.wait(10)
    return client, result["rc"]


@pytest.mark.servers
def test_the_ingester_account_may_publish_its_shutdown_barrier(
    compose_broker: ComposeBroker, passwords: dict[str, str]
) -> None:
    """The ingester's clean stop publishes a QoS 1 barrier on its own sync topic; refused by
    the ACL, MQTT 5 still acknowledges it (so the stop looks clean) but with a refusal code."""
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id="smartcity-ingest", protocol=paho.MQTTv5
    )
    client.username_pw_set("ingest", passwords["ingest"])
    acked: list[Any] = []
    done = threading.Event()

    def on_publish(c: paho.Client, u: object, mid: int, rc: Any, props: object) -> None:
        acked.append(rc)
        done.set()

    client.on_publish = on_publish
    client.connect(compose_broker.host, compose_broker.port)
    client.loop_start()
    try:
        client.publish(f"{SYNC_TOPIC_PREFIX}/smartcity-ingest", b"", qos=1)
        assert done.wait(10)
    finally:
        client.disconnect()
        client.loop_stop()
    assert not acked[0].is_failure, acked


def readings(influx: Influx) -> int:
    return sum(influx.count(t.measurement()) for t in DEVICE_TYPES.values())


def eventually(check: Callable[[], bool], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.mark.servers
def test_anonymous_clients_are_refused(compose_broker: ComposeBroker) -> None:
    client, rc = connect(compose_broker, None, None)
    client.loop_stop()
    assert rc.is_failure
    client, rc = connect(compose_broker, "ingest", "wrong")
    client.loop_stop()
    assert rc.is_failure


@pytest.mark.servers
def test_the_compose_healthcheck_command_works(
    compose_broker: ComposeBroker, passwords: dict[str, str], resolved: dict[str, Any]
) -> None:
    """The healthcheck's own command line, from the resolved compose file, on the broker."""
    (command,) = resolved["services"]["mosquitto"]["healthcheck"]["test"][1:]
    command = command.replace("$$", "$").replace('"$MQTT_PASSWORD_MONITOR"', passwords["monitor"])
    argv = command.split()
    argv[0] = find_binary(argv[0])
    argv[argv.index("-h") + 1 : argv.index("-h") + 4] = [compose_broker.host, "-p",
                                                         str(compose_broker.port)]  # fmt: skip
    argv = [a.strip("'") for a in argv]
    out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "seconds" in out.stdout


@pytest.mark.servers
def test_services_and_devices_work_within_their_acls(
    compose_broker: ComposeBroker, influxd: Influxd, passwords: dict[str, str], tmp_path: Path
) -> None:
    influx, city = Influx(influxd.url, f"db_{CITY}_{uuid.uuid4().hex[:6]}"), CITY
    env = smartcity_env(url(compose_broker, "ingest", passwords["ingest"]), influx, city)
    # the ingest login is bound to the client id smartcity-ingest (the default)
    ingester = IngesterProcess(env, tmp_path / "ingest.log")
    ingester.start().wait_subscribed()
    # a device made as docs/edge.md says, and a test-only account that sends commands (no
    # compose service sends any yet), so the devices' own rules are still tried
    auth = AuthBroker(compose_broker, passwords, city)
    secret = auth.add_device("wastebin", DEVICE)
    commands = [{"acltype": "publishClientSend", "topic": f"smartcity/v1/{city}/+/+/cmd",
                 "allow": True}]  # fmt: skip
    broker_accounts.run(
        auth.admin, {"command": "createRole", "rolename": COMMANDER, "acls": commands}
    )
    broker_accounts.create_client(auth.admin, COMMANDER, "commander-secret", COMMANDER, [COMMANDER])
    try:
        sim_env = {
            **env,
            "SMARTCITY_MQTT_URL": url(compose_broker, "simulator", passwords["simulator"]),
        }
        result = run_smartcity(
            "simulate", "--streetlights", "5", "--bins", "5", "--chargers", "2",
            "--messages", "300", "--speed", "0", "--no-progress",
            "--start", (datetime.now(UTC) - timedelta(hours=2)).isoformat(), env=sim_env,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert eventually(lambda: readings(influx) == 300), readings(influx)
        # a device hears only its own commands: a wildcard subscription is refused outright
        device, rc = connect(compose_broker, DEVICE, secret)
        assert not rc.is_failure
        heard: list[str] = []
        granted: list[Any] = []
        subscribed = threading.Event()
        device.on_message = lambda c, u, m: heard.append(m.topic)

        def on_subscribe(c: paho.Client, u: object, mid: int, reasons: Any, p: object) -> None:
            granted.append(reasons[0])
            subscribed.set()

        device.on_subscribe = on_subscribe
        for wanted in (
            f"smartcity/v1/{city}/wastebin/+/cmd",
            topic("wastebin", DEVICE, "cmd", city),
        ):
            subscribed.clear()
            device.subscribe(wanted, qos=1)
            assert subscribed.wait(10)
        assert [g.is_failure for g in granted] == [True, False], granted
        commander, rc = connect(compose_broker, COMMANDER, "commander-secret")
        assert not rc.is_failure
        for dev in (OTHER, DEVICE):
            sent = commander.publish(topic("wastebin", dev, "cmd", city), b"{}", qos=1)
            sent.wait_for_publish(10)
        commander.loop_stop()
        assert eventually(lambda: len(heard) >= 1)
        time.sleep(1)  # the other device's command was sent first: it had every chance
        assert heard == [topic("wastebin", DEVICE, "cmd", city)]
        # and publishes as itself only
        now = datetime.now(UTC)
        for dev in (OTHER, DEVICE):
            reading = good_reading(0, now)
            device.publish(topic("wastebin", dev, "telemetry", city), reading, qos=1)
        assert eventually(lambda: influx.count("wastebin", device_id=DEVICE) == 1)
        device.loop_stop()
        time.sleep(1)  # the refused one was sent first; give it every chance to show up
        assert influx.count("wastebin", device_id=OTHER) == 0
    finally:
        # a clean stop needs the shutdown barrier (ingest/service.py) through the ACL too
        code = ingester.stop()
    assert code == 0, ingester.log()


def healthcheck(influx: Influx, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**smartcity_env("mqtt://unused:1883", influx, "unused"), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(ROOT / "deploy/healthcheck.py"), *args],
        env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


@pytest.mark.servers
def test_fresh_data_healthcheck_follows_the_newest_reading(influx: Influx) -> None:
    def store(age: timedelta) -> None:
        ts = point_time_ns(datetime.now(UTC) - age, 1)
        body = line("evcharger", {"device_id": "ev-1", "zone": "Po"}, {"seq": 1}, ts).encode()
        create = urllib.parse.urlencode({"q": f'CREATE DATABASE "{influx.db}"'}).encode()
        urllib.request.urlopen(f"{influx.url}/query", create, timeout=10).close()
        write = f"{influx.url}/write?db={influx.db}"
        urllib.request.urlopen(write, body, timeout=10).close()

    store(timedelta(hours=1))
    stale = healthcheck(influx, "fresh", "300")
    assert stale.returncode == 1
    assert "younger than 300 s" in stale.stderr
    store(timedelta(seconds=10))
    assert healthcheck(influx, "fresh", "300").returncode == 0
    assert healthcheck(influx, "bogus").returncode == 2
