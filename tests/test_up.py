"""``smartcity up`` for real: its own servers on free ports, readings in, nothing left behind.

Each test runs the real command as a child process with a temporary data folder, so what is
checked is what an operator gets: the servers, the ingester, the API and the simulator, and
that every one of them is gone after a stop or a failed start.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from smartcity.devices import DEVICE_TYPES
from stack.servers import free_port

from .conftest import Influx

TYPES = tuple(DEVICE_TYPES)
#: The old per-type flags and --fleet together: both set the fleet, type by type.
FLEET = ("--streetlights", "10", "--bins", "6", "--chargers", "3", "--fleet", "airquality=10",
         "--backfill", "300")  # fmt: skip
DEVICES = 10 + 6 + 3 + 10


class Up:
    """``smartcity up`` on free loopback ports, its output (and its children's) in a file."""

    def __init__(self, tmp_path: Path, *extra: str, data: Path | None = None) -> None:
        self.data = data or tmp_path / "var"
        self.out = tmp_path / "up.out"
        self.mqtt_port, self.influx_port, self.api_port = free_port(), free_port(), free_port()
        self.influx = Influx(f"http://127.0.0.1:{self.influx_port}", "smartcity")
        self.args = [
            "--mqtt-url", f"mqtt://127.0.0.1:{self.mqtt_port}",
            "--influx-url", self.influx.url, "--api-port", str(self.api_port),
            "--data-dir", str(self.data), "--no-install", *FLEET, *extra,
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTCITY_")}
        self.env = env | {"SMARTCITY_INGEST_METRICS_PORT": "0"}  # 9108 may be taken here
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Up:
        with self.out.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "smartcity", "up", *self.args],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        return self

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_for(self, condition: object, what: str, timeout: float = 60) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while not condition():  # type: ignore[operator]
            if self.proc.poll() is not None:
                raise AssertionError(f"smartcity up exited before {what}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} in {timeout} s:\n{self.output()}")
            time.sleep(0.2)

    def wait_up(self) -> None:
        self.wait_for(lambda: "pipeline is up" in self.output(), "banner")

    def stop(self, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill_leftovers(self) -> None:
        """Test clean-up only: whatever a failing test left running must not outlive it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in processes_of(self.data):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    u = Up(tmp_path)
    yield u
    u.kill_leftovers()


# -- processes, read from /proc ----------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, only not yet reaped


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def descendants(root: int) -> dict[int, str]:
    """Every live process below ``root``, with its command line."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
            except (OSError, ValueError, IndexError):
                continue
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        parent = todo.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found and _alive(pid):
                found[pid] = _cmdline(pid)
                todo.append(pid)
    return found


def processes_of(data: Path) -> list[int]:
    """Live processes whose command line or environment names this run's data folder.

    Finds this run's servers (their config is in it) and Python children (their spool is in
    it) even after ``smartcity up`` has exited and they were re-parented.
    """
    mine = []
    marker = str(data).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            seen = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in seen and _alive(int(entry.name)):
            mine.append(int(entry.name))
    return mine


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


# -- the tests ---------------------------------------------------------------------------------


MEASUREMENTS = ", ".join(f'"{t.measurement()}"' for t in DEVICE_TYPES.values())


def counts(influx: Influx) -> dict[str, int]:
    try:
        rows = influx.query(f'SELECT count("seq") FROM {MEASUREMENTS}')
    except (OSError, AssertionError):  # not up yet, or the database not created yet
        return {}
    return {str(r["_measurement"]): int(r["count"]) for r in rows}  # type: ignore[call-overload]


def test_readings_of_every_type_within_60_s_tagged_by_the_registry(up: Up) -> None:
    t0 = time.monotonic()
    up.start()
    up.wait_for(lambda: set(counts(up.influx)) == set(TYPES), "readings of every type", 60)
    assert time.monotonic() - t0 < 60
    assert all(n > 0 for n in counts(up.influx).values())
    # the simulated fleet is registered, so no device is flagged as unregistered, and the API
    # serves the same registry
    assert up.influx.count("device_unregistered", "count") == 0
    up.wait_for(lambda: listening(up.api_port), "the API", 30)
    with urllib.request.urlopen(f"http://127.0.0.1:{up.api_port}/v1/devices", timeout=10) as r:
        assert json.load(r)["count"] == DEVICES
    # on a new broker nothing before the ingester's subscription is lost: every device's
    # first reading (seq 0) is stored
    up.wait_for(lambda: len(first_seqs(up.influx)) == DEVICES, "every device", 30)
    assert set(first_seqs(up.influx).values()) == {0}, first_seqs(up.influx)
    # the environment service is live, with its stations' KPIs
    up.wait_for(lambda: stations_reporting(up.api_port) == 10, "the air-quality KPIs", 60)
    assert up.stop() == 0, up.output()


def stations_reporting(api_port: int) -> float | None:
    url = f"http://127.0.0.1:{api_port}/v1/services"
    with urllib.request.urlopen(url, timeout=10) as r:
        services = {s["id"]: s for s in json.load(r)["data"]}
    environment = services["environment"]
    assert environment["status"] == "live"
    kpis = {k["id"]: k["value"] for k in environment["kpis"]}
    assert {"pm10_days_over_limit", "no2_hours_over_limit", "pm25_annual_mean"} <= set(kpis)
    return kpis["stations_reporting"]


def first_seqs(influx: Influx) -> dict[str, int]:
    """The lowest ``seq`` stored per device."""
    rows = influx.query(f'SELECT min("seq") FROM {MEASUREMENTS} GROUP BY "device_id"')
    return {str(r["device_id"]): int(r["min"]) for r in rows}  # type: ignore[call-overload]


def test_the_broker_has_the_compose_accounts_kept_owner_only_and_across_restarts(
    up: Up, tmp_path: Path
) -> None:
    """The local broker runs the dynamic security plugin with smartcity/broker_acl.py's roles,
    as compose's does: anonymous clients are refused, the read-only observer (bound to its
    client id) sees the devices' messages, every secret file is owner-only (the password file
    used to be 0644), and a device added at runtime survives the next start (which used to
    rebuild the password file without it)."""
    up.start()
    up.wait_up()
    broker = up.data / "mosquitto"
    password = (broker / "passwords" / "observer").read_text().strip()
    assert "passwords/observer" in up.output(), "the banner says where the login is"

    def sub(*login: str, port: int = up.mqtt_port) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), *login,
             "-t", "smartcity/v1/+/+/+/telemetry", "-C", "1", "-W", "20"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip

    anonymous = sub()
    assert anonymous.returncode != 0
    assert "not authori" in anonymous.stderr.lower(), anonymous.stderr
    observer = sub("-u", "observer", "-P", password, "-i", "observer")
    assert observer.returncode == 0, observer.stderr
    assert json.loads(observer.stdout)["readings"]
    elsewhere = sub("-u", "observer", "-P", password, "-i", "smartcity-ingest")
    assert "not authori" in elsewhere.stderr.lower(), "a login is bound to its own client id"
    publish = subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(up.mqtt_port), "-u", "observer",
         "-P", password, "-i", "observer", "-t", "smartcity/v1/cremona/wastebin/wb-x/telemetry",
         "-m", "{}", "-q", "1", "-V", "mqttv5"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert "not authori" in (publish.stdout + publish.stderr).lower(), "the observer only reads"
    # every file of the broker's but its config, log and persistence is a secret
    secrets = [
        p for p in broker.rglob("*")
        if p.is_file() and p.name not in ("mosquitto.conf", "mosquitto.log")
        and p.parent != broker / "data"
    ]  # fmt: skip
    assert {p.name for p in secrets} >= {"observer", "smartcity-admin", "dynamic-security.json"}
    for path in secrets:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((broker / "passwords").stat().st_mode) == 0o700
    # an operator adds a device while it runs, as docs/edge.md says
    env = up.env | {"SMARTCITY_MQTT_URL": f"mqtt://127.0.0.1:{up.mqtt_port}"}
    added = subprocess.run(
        [sys.executable, "-m", "smartcity", "broker", "add-device", "streetlight", "sl-kept",
         "--admin-password-file", str(broker / "passwords" / "smartcity-admin")],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    secret = added.stdout.split()[-1]
    assert up.stop() == 0, up.output()
    again = Up(tmp_path, "--no-simulate", "--no-api")
    try:
        again.start()
        again.wait_up()
        device = subprocess.run(
            ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(again.mqtt_port), "-u", "sl-kept",
             "-P", secret, "-i", "sl-kept", "-q", "1", "-V", "mqttv5", "-m", "{}",
             "-t", "smartcity/v1/cremona/streetlight/sl-kept/status"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert device.returncode == 0, device.stderr
        assert again.stop() == 0, again.output()
    finally:
        again.kill_leftovers()


def test_devices_are_provisioned_against_it_by_the_cli_and_the_api_with_its_defaults(
    tmp_path: Path,
) -> None:
    """Issue 12 §2: docs/edge.md's ``smartcity devices provision`` and the API's credentials
    work against ``smartcity up`` as they come (registry and admin password under var/)."""
    up = Up(tmp_path, "--no-simulate")
    try:
        up.start()
        up.wait_up()
        up.wait_for(lambda: listening(up.api_port), "the API", 30)
        env = up.env | {"SMARTCITY_MQTT_URL": f"mqtt://127.0.0.1:{up.mqtt_port}"}

        def smartcity(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "smartcity", *args], env=env, cwd=tmp_path,
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip

        made = smartcity(
            "devices", "provision", "--device-type", "streetlight", "--device-id", "sl-field-1",
            "--zone", "Centro", "--lat", "45.13351", "--lon", "10.02450", "--out", "agent.toml",
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        key = smartcity("api", "create-key", "--scope", "admin").stdout.split()[0]
        api = f"http://127.0.0.1:{up.api_port}/v1/devices"

        def post(url: str, body: dict[str, object] | None = None) -> dict[str, object]:
            data = json.dumps(body).encode() if body is not None else b""
            headers = {"X-API-Key": key, "Content-Type": "application/json"}
            request = urllib.request.Request(url, data, headers, method="POST")
            with urllib.request.urlopen(request, timeout=30) as r:
                return dict(json.load(r))

        post(api, {"device_id": "wb-api-1", "device_type": "wastebin", "zone": "Po",
                   "lat": 45.124, "lon": 10.0185})  # fmt: skip
        password = str(post(f"{api}/wb-api-1/credentials")["password"])
        in_file = (tmp_path / "agent.toml").read_text().split('password = "')[1].split('"')[0]
        for user, secret, kind in (
            ("sl-field-1", in_file, "streetlight"),
            ("wb-api-1", password, "wastebin"),
        ):
            sent = subprocess.run(
                ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(up.mqtt_port), "-u", user,
                 "-P", secret, "-i", user, "-q", "1", "-V", "mqttv5", "-m", "{}",
                 "-t", f"smartcity/v1/cremona/{kind}/{user}/status"],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            assert sent.returncode == 0, (user, sent.stderr)
        assert up.stop() == 0, up.output()
    finally:
        up.kill_leftovers()


def test_sigterm_stops_every_child_and_exits_0(up: Up) -> None:
    up.start()
    up.wait_up()
    assert up.proc is not None
    children = descendants(up.proc.pid)
    kinds = {
        kind
        for kind in ("mosquitto", "influxd", " ingest", " api", " simulate")
        if any(kind in cmd for cmd in children.values())
    }
    assert kinds == {"mosquitto", "influxd", " ingest", " api", " simulate"}, children
    assert up.stop() == 0, up.output()
    left = {pid: cmd for pid, cmd in children.items() if _alive(pid)}
    assert left == {}, f"still running after smartcity up exited: {left}"
    assert processes_of(up.data) == []
    for port in (up.mqtt_port, up.influx_port, up.api_port):
        assert not listening(port), port


def test_sigterm_during_start_up_stops_what_was_started(up: Up) -> None:
    up.start()
    # mosquitto answers first; influxd is still starting (or the children are)
    up.wait_for(lambda: listening(up.mqtt_port), "broker", 30)
    assert up.stop() == 0, up.output()
    assert processes_of(up.data) == []
    assert not listening(up.mqtt_port)
    assert not listening(up.influx_port)


@pytest.mark.parametrize("which", ["mqtt", "influx", "api"])
def test_a_busy_port_is_refused_before_anything_starts(up: Up, which: str) -> None:
    port = {"mqtt": up.mqtt_port, "influx": up.influx_port, "api": up.api_port}[which]
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        up.start()
        assert up.proc is not None
        assert up.proc.wait(60) == 1
    out = up.output()
    assert f"port 127.0.0.1:{port} for " in out, out
    assert "already in use" in out
    assert "nothing was started" in out
    assert f"--{which}-" in out  # the flag that picks another port
    assert "Traceback" not in out
    assert not up.data.exists(), "nothing may be started, nor written, before the check"


def test_every_busy_port_is_reported_at_once_with_its_flag(up: Up) -> None:
    metrics = free_port()
    up.args += ["--ingest-metrics-port", str(metrics)]
    with contextlib.ExitStack() as squatters:
        for port in (up.mqtt_port, up.api_port, metrics):
            squatter = squatters.enter_context(socket.socket())
            squatter.bind(("127.0.0.1", port))
            squatter.listen()
        up.start()
        assert up.proc is not None
        assert up.proc.wait(60) == 1
    out = up.output()
    for port, flag in ((up.mqtt_port, "--mqtt-url"), (up.api_port, "--api-port"),
                       (metrics, "--ingest-metrics-port")):  # fmt: skip
        assert f"port 127.0.0.1:{port} for " in out, out
        assert flag in out
    assert f":{up.influx_port}" not in out, "a free port is not busy"
    assert not up.data.exists()


def test_a_second_up_in_the_same_folder_is_refused(up: Up, tmp_path: Path) -> None:
    metrics = free_port()
    up.args += ["--ingest-metrics-port", str(metrics)]
    up.start()
    up.wait_up()
    assert up.proc is not None
    up.wait_for(lambda: listening(metrics), "the ingester's metrics on its port", 30)
    config = (up.data / "mosquitto" / "mosquitto.conf").read_text()
    second = Up(tmp_path / "second", data=up.data)  # other ports, same folder
    (tmp_path / "second").mkdir()
    second.start()
    assert second.proc is not None
    try:
        assert second.proc.wait(60) == 1, second.output()
    finally:  # only its own process: the folder's other processes are the first run's
        if second.proc.poll() is None:
            second.proc.kill()
    out = second.output()
    assert f"{up.data} is in use by another smartcity up (process {up.proc.pid})" in out, out
    assert "--data-dir" in out
    assert "Traceback" not in out
    assert not listening(second.mqtt_port)
    # the first run's files are untouched and it runs on
    assert (up.data / "mosquitto" / "mosquitto.conf").read_text() == config
    assert (up.data / "ingest.ready").exists()
    assert up.proc.poll() is None
    assert up.stop() == 0, up.output()


def test_a_server_failing_to_start_leaves_no_server_running(up: Up) -> None:
    # influxd (started second) cannot create its meta folder, so it exits at start-up
    (up.data / "influxdb").mkdir(parents=True)
    (up.data / "influxdb" / "meta").write_text("not a folder")
    up.start()
    assert up.proc is not None
    assert up.proc.wait(60) == 1, up.output()
    out = up.output()
    assert "influxd exited at start-up" in out, out
    assert "Nothing is left running" in out
    assert "Traceback" not in out
    assert "mosquitto" in (up.data / "mosquitto" / "mosquitto.conf").read_text()  # it did start
    assert processes_of(up.data) == []
    assert not listening(up.mqtt_port)
