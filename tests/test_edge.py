"""The edge agent against real Mosquitto, InfluxDB and the real ingester, as installers run it.

Every agent here is a ``smartcity edge run`` child process, so SIGKILL is a real crash. Counts
come from the agent's own outbox (``next_seq`` is how many readings it produced), never from
constants: whatever the timing, every reading produced must be in InfluxDB exactly once.
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
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.outbox import Outbox
from simulators.base import local_hour
from smartcity import broker_accounts
from smartcity.contract import topic
from smartcity.devices import DEVICE_TYPES
from smartcity.dynsec import new_password
from stack.servers import Mosquitto, free_port

from .conftest import (
    AuthBroker,
    Influx,
    IngesterProcess,
    auth_broker_at,
    run_smartcity,
    running,
    smartcity_env,
)

INTERVAL = "0.05"


class AgentProcess:
    """``smartcity edge run`` as a child process with its own outbox and log."""

    def __init__(self, env: dict[str, str], workdir: Path, device_id: str, *args: str) -> None:
        self.env = env
        self.device_id = device_id
        self.outbox = workdir / f"{device_id}.sqlite"
        self.log_path = workdir / f"{device_id}.log"
        self.args = [
            "--device-id", device_id, "--driver", "simulated", "--interval", INTERVAL,
            "--outbox", str(self.outbox), "--zone", "Centro", "--heartbeat", "0.5",
            "--reconnect-max-delay", "0.5", "--reconnect-min-delay", "0.1", *args,
        ]  # fmt: skip
        if "--device-type" not in args:
            self.args += ["--device-type", "streetlight"]
        self.device_type = self.args[self.args.index("--device-type") + 1]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> AgentProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "smartcity", "edge", "run", *self.args, *extra],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_log(self, text: str, count: int = 1, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.log().count(text) < count:
            assert self.proc is not None
            assert self.proc.poll() is None, f"agent exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"no {text!r} in the agent log:\n{self.log()}"
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(60)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def produced(self) -> tuple[int, int, int]:
        """(readings produced, readings still waiting, readings dropped), from the outbox."""
        with Outbox(self.outbox, 10, exclusive=False) as box:
            return box.next_seq, box.depth, box.dropped


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[list[AgentProcess]]:
    """Agents a test starts are stopped after it, whatever happened."""
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.stop(signal.SIGKILL)


def seq_stats(influx: Influx, device_id: str, measurement: str = "streetlight") -> tuple:
    rows = influx.query(
        f'SELECT count("seq"), min("seq"), max("seq") FROM "{measurement}" '
        'WHERE "device_id" = $device_id',
        device_id=device_id,
    )
    return (rows[0]["count"], rows[0]["min"], rows[0]["max"]) if rows else (0, None, None)


def wait_for_readings(
    influx: Influx,
    device_id: str,
    at_least: int,
    timeout: float = 60,
    measurement: str = "streetlight",
) -> None:
    deadline = time.monotonic() + timeout
    while seq_stats(influx, device_id, measurement)[0] < at_least:
        assert time.monotonic() < deadline, f"fewer than {at_least} readings of {device_id}"
        time.sleep(0.1)


def assert_every_reading_once(influx: Influx, agent: AgentProcess, first: int = 0) -> int:
    """Seqs ``first`` .. last produced are all in InfluxDB, each once; returns how many."""
    produced, waiting, _ = agent.produced()
    assert waiting == 0, "a clean stop sends everything that waits in the outbox"
    expected = produced - first
    assert influx.wait_for_count(agent.device_type, expected) == expected
    assert seq_stats(influx, agent.device_id, agent.device_type) == (expected, first, produced - 1)
    return expected


# -- store and forward ---------------------------------------------------------------------------


def test_broker_restart_mid_stream_loses_and_doubles_nothing(
    own_mosquitto: Mosquitto, influx: Influx, city: str, tmp_path: Path, agents: list
) -> None:
    env = smartcity_env(own_mosquitto.url, influx, city)
    # the ingester's disk spool and metrics port, where its version has them (unknown
    # SMARTCITY_INGEST_* variables are ignored by one that has not)
    env |= {
        "SMARTCITY_INGEST_SPOOL_DIR": str(tmp_path / "spool"),
        "SMARTCITY_INGEST_METRICS_PORT": "0",
    }
    # A plain subscription: Mosquitto 2.0.11 does not restore a *shared* subscription from its
    # persistence file, so after a broker restart it discards what is published for the group
    # until the ingester has subscribed again. That is the ingester's configuration to settle;
    # this test is about the agent, which had every one of those readings PUBACKed.
    ingester = IngesterProcess(
        env, tmp_path / "ingest.log", "--client-id", f"ingest-{city}", "--share-group", "",
        "--reconnect-max-delay", "1",
    ).start()  # fmt: skip
    try:
        ingester.wait_subscribed()
        agent = AgentProcess(env, tmp_path, "sl-restart").start()
        agents.append(agent)
        wait_for_readings(influx, agent.device_id, 10)
        own_mosquitto.stop()
        agent.wait_log("broker connection lost")
        time.sleep(1.0)  # the agent keeps reading into its outbox meanwhile
        own_mosquitto.start()
        agent.wait_log("connected to broker", count=2)
        before = seq_stats(influx, agent.device_id)[0]
        wait_for_readings(influx, agent.device_id, before + 10)
        assert agent.stop() == 0
        total = assert_every_reading_once(influx, agent)
        assert total > before
    finally:
        ingester.stop()
    # the outage really was bridged by the outbox: health said readings were waiting
    rows = influx.query(
        'SELECT max("outboxDepth") FROM "device_health" WHERE "device_id" = $d', d="sl-restart"
    )
    assert rows[0]["max"] > 5


def test_agent_killed_mid_stream_and_restarted_loses_nothing(
    mosquitto: Mosquitto, influx: Influx, ingester: IngesterProcess, city: str, tmp_path: Path,
    agents: list,
) -> None:  # fmt: skip
    agent = AgentProcess(smartcity_env(mosquitto.url, influx, city), tmp_path, "sl-kill")
    agents.append(agent.start())
    wait_for_readings(influx, agent.device_id, 20)
    assert agent.stop(signal.SIGKILL) == -signal.SIGKILL
    killed_at = agent.produced()[0]
    agent.start()
    agent.wait_log("connected to broker", count=2)
    wait_for_readings(influx, agent.device_id, killed_at + 10)
    assert agent.stop() == 0
    assert assert_every_reading_once(influx, agent) > killed_at
    # the Last Will marked it offline when it died; the restart and the clean stop are stored too
    states = influx.query(
        'SELECT "state" FROM "device_status" WHERE "device_id" = $d', d=agent.device_id
    )
    assert [r["state"] for r in states] == ["online", "offline", "online", "offline"]


def test_full_outbox_drops_the_oldest_counts_and_reports_them_and_sends_the_rest(
    mosquitto: Mosquitto, influx: Influx, ingester: IngesterProcess, city: str, tmp_path: Path,
    agents: list,
) -> None:  # fmt: skip
    nowhere = f"mqtt://127.0.0.1:{free_port()}"  # no broker: everything stays in the outbox
    agent = AgentProcess(
        smartcity_env(mosquitto.url, influx, city), tmp_path, "sl-full", "--outbox-max", "20"
    )
    agents.append(agent.start("--mqtt-url", nowhere))
    agent.wait_log("outbox full: dropping the oldest readings")
    time.sleep(0.5)
    assert agent.stop() == 0
    produced, waiting, dropped = agent.produced()
    assert waiting == 20
    assert dropped == produced - 20 > 0
    agent.start()  # now with the real broker (its first reading, still offline, drops one more)
    agent.wait_log("connected to broker")
    wait_for_readings(influx, agent.device_id, 25)
    assert agent.stop() == 0
    dropped = agent.produced()[2]
    assert_every_reading_once(influx, agent, first=dropped)  # the oldest are the ones gone
    health = influx.query(
        'SELECT last("dropped") FROM "device_health" WHERE "device_id" = $d', d=agent.device_id
    )
    assert health[0]["last"] == dropped


# -- commands ------------------------------------------------------------------------------------


class Operator:
    """A platform-side client that sends commands and collects results and readings."""

    def __init__(
        self,
        broker: Mosquitto,
        user: str | None = None,
        password: str | None = None,
        client_id: str = "",
    ):
        self.results: dict[str, list[dict]] = {}
        self.readings: list[dict] = []
        self.acks: dict[int, object] = {}
        self.subscribed = threading.Event()
        self.suback: Any = None
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
        )
        if user:
            self.client.username_pw_set(user, password)
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = lambda c, u, mid, reason, p: self.acks.__setitem__(mid, reason)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_subscribe(self, c: paho.Client, u: object, mid: int, reasons: Any, p: object) -> None:
        self.suback = reasons[0]
        self.subscribed.set()

    def watch(self, *topics: str) -> None:
        for t in topics:
            self.subscribed.clear()
            self.client.subscribe(t, qos=1)
            assert self.subscribed.wait(10)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        if msg.topic.endswith("/telemetry"):
            self.readings.extend(body["readings"])
        else:
            self.results.setdefault(msg.topic, []).append(body)

    def send(self, to: str, payload: bytes) -> int:
        info = self.client.publish(to, payload, qos=1)
        info.wait_for_publish(10)
        return info.mid

    def wait_results(self, result_topic: str, n: int, timeout: float = 20) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.results.get(result_topic, [])) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.results.get(result_topic, [])

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def readings_between(by_id: dict, readings: list[dict], first: str, then: str | None) -> list[dict]:
    """The readings a device took after command ``first`` was applied and before ``then`` was.

    Readings are stamped to the millisecond, results to the microsecond: a reading taken just
    after a command, in the same millisecond, bears an earlier stamp than the command's result.
    So both bounds are cut to the millisecond and readings in those very milliseconds left out.
    """

    def ms(result_id: str) -> datetime:
        t = ts(by_id[result_id]["ts"])
        return t.replace(microsecond=t.microsecond // 1000 * 1000)

    start, end = ms(first), ms(then) if then else None
    return [r for r in readings if start < ts(r["ts"]) and (end is None or ts(r["ts"]) < end)]


def streetlight_effects(by_id: dict, readings: list[dict]) -> None:
    lit = readings_between(by_id, readings, "on", "off")
    dark = readings_between(by_id, readings, "off", "on-again")
    dimmed = readings_between(by_id, readings, "dim", "schedule")
    scheduled = readings_between(by_id, readings, "schedule", None)
    assert lit
    assert all(r["powerState"] != "off" for r in lit)
    assert dark
    assert all(r["powerState"] == "off" for r in dark)
    assert dimmed
    assert all(r["illuminanceLevel"] == 0.3 for r in dimmed)
    assert scheduled  # forced on, so lit day or night, at the level of the local hour's step
    assert all(
        r["illuminanceLevel"] == (0.6 if local_hour(ts(r["ts"])) < 12 else 0.4) for r in scheduled
    )


def evcharger_effects(by_id: dict, readings: list[dict]) -> None:
    def first_connector(first: str, then: str | None) -> list[str]:
        return [
            r["connectors"][0]["status"] for r in readings_between(by_id, readings, first, then)
        ]

    out_of_service, back = first_connector("off-1", "on-1"), first_connector("on-1", None)
    assert out_of_service
    assert set(out_of_service) == {"Unavailable"}, (by_id, readings)
    assert back
    assert "Unavailable" not in back


def wastebin_effects(by_id: dict, readings: list[dict]) -> None:
    # a reading every 0.05 s until setInterval, then the next one is 10 s after the last
    assert len(readings_between(by_id, readings, "first", "slow")) >= 3
    assert len(readings_between(by_id, readings, "slow", None)) <= 1


#: Per device type: the commands sent in order, each with the result expected (``accepted``, or
#: a word of the rejection's reason; a command without a usable id is answered with id None),
#: the check that the accepted ones changed what the device then read, and how many readings to
#: wait for after the last answer before stopping (the check needs some, on a loaded machine too).
ROUND_TRIPS: dict[
    str, tuple[list[tuple[str | None, bytes, str]], Callable[[dict, list], None], int]
] = {
    "streetlight": (
        [
            ("on", b'{"v":1,"id":"on","action":"switch","state":"on"}', "accepted"),
            (None, b"this is not json", "bad_json"),
            ("too-bright", b'{"v":1,"id":"too-bright","action":"dim","level":7}', "dim.level"),
            ("off", b'{"v":1,"id":"off","action":"switch","state":"off"}', "accepted"),
            ("unknown", b'{"v":1,"id":"unknown","action":"explode"}', "explode"),
            ("extra", b'{"v":1,"id":"extra","action":"switch","state":"on","force":true}', "force"),
            ("on-again", b'{"v":1,"id":"on-again","action":"switch","state":"on"}', "accepted"),
            ("dim", b'{"v":1,"id":"dim","action":"dim","level":0.3}', "accepted"),
            (
                "schedule",
                b'{"v":1,"id":"schedule","action":"schedule","steps":'
                b'[{"start":0,"end":12,"level":0.6},{"start":12,"end":24,"level":0.4}]}',
                "accepted",
            ),
        ],
        streetlight_effects,
        3,
    ),
    "evcharger": (
        [
            (
                "off-1",
                b'{"v":1,"id":"off-1","action":"setConnector","connectorId":1,"enabled":false}',
                "accepted",
            ),
            (
                "no-such",
                b'{"v":1,"id":"no-such","action":"setConnector","connectorId":8,"enabled":false}',
                "connectorId 8",
            ),
            ("dim", b'{"v":1,"id":"dim","action":"dim","level":0.3}', "dim"),
            (
                "on-1",
                b'{"v":1,"id":"on-1","action":"setConnector","connectorId":1,"enabled":true}',
                "accepted",
            ),
        ],
        evcharger_effects,
        3,
    ),
    "wastebin": (
        [
            ("first", b'{"v":1,"id":"first","action":"setInterval","interval":1}', "interval"),
            ("slow", b'{"v":1,"id":"slow","action":"setInterval","interval":10}', "accepted"),
        ],
        wastebin_effects,
        0,  # its last command is to report every 10 s
    ),
    "airquality": (
        [
            ("dim", b'{"v":1,"id":"dim","action":"dim","level":0.3}', "dim"),
            ("first", b'{"v":1,"id":"first","action":"setInterval","interval":1}', "interval"),
            ("slow", b'{"v":1,"id":"slow","action":"setInterval","interval":10}', "accepted"),
        ],
        wastebin_effects,  # the same command, the same effect: a reading every 10 s from then
        0,
    ),
}


def test_every_device_type_has_a_round_trip() -> None:
    assert ROUND_TRIPS.keys() == DEVICE_TYPES.keys()


@pytest.mark.parametrize("device_type", sorted(ROUND_TRIPS))
def test_commands_round_trip_and_bad_ones_are_rejected_without_disturbing_readings(
    mosquitto: Mosquitto, influx: Influx, ingester: IngesterProcess, city: str, tmp_path: Path,
    agents: list, device_type: str,
) -> None:  # fmt: skip
    commands, effects, settle = ROUND_TRIPS[device_type]
    agent = AgentProcess(
        smartcity_env(mosquitto.url, influx, city), tmp_path, f"{device_type[:2]}-cmd",
        "--device-type", device_type,
    )  # fmt: skip
    cmd = topic(device_type, agent.device_id, "cmd", city)
    result_topic = topic(device_type, agent.device_id, "cmd_result", city)
    op = Operator(mosquitto)
    try:
        op.watch(result_topic, topic(device_type, agent.device_id, "telemetry", city))
        agents.append(agent.start())
        agent.wait_log("connected to broker")
        for _, payload, _ in commands:
            op.send(cmd, payload)
            time.sleep(0.2)
        results = op.wait_results(result_topic, len(commands))
        assert len(results) == len(commands), results
        by_id = {r.get("id"): r for r in results}
        last, deadline = commands[-1][0], time.monotonic() + 20
        while len(readings_between(by_id, op.readings, last, None)) < settle:  # type: ignore[arg-type]
            assert time.monotonic() < deadline, f"no readings after {last}"
            time.sleep(0.05)
        time.sleep(0.5)
        assert agent.stop() == 0
    finally:
        op.close()
    for command_id, _, expected in commands:
        result = by_id[command_id]
        if expected == "accepted":
            assert result["status"] == "accepted", result
        else:
            assert result["status"] == "rejected", result
            assert expected in result["reason"], result
    # each accepted command took effect from the next reading on
    effects(by_id, op.readings)
    # and the stream never stopped
    assert_every_reading_once(influx, agent)


# -- a driver slower than the keepalive ------------------------------------------------------------


def test_a_driver_slower_than_the_keepalive_keeps_the_connection_and_every_reading(
    mosquitto: Mosquitto, influx: Influx, ingester: IngesterProcess, city: str, tmp_path: Path,
    agents: list,
) -> None:  # fmt: skip
    """A read that blocks 8 s, with a 5 s keepalive: the broker drops a client silent for
    7.5 s, so the MQTT loop must carry on while the driver works."""
    agent = AgentProcess(
        smartcity_env(mosquitto.url, influx, city), tmp_path, "sl-slow", "--keepalive", "5",
        "--driver-options", '{"read_delay": 8}', "--driver-timeout", "1",
    )  # fmt: skip
    agents.append(agent.start())
    agent.wait_log("the slow driver answered", count=2, timeout=60)
    assert agent.stop() == 0
    log = agent.log()
    assert log.count("connected to broker") == 1, log
    assert "broker connection lost" not in log
    assert assert_every_reading_once(influx, agent) >= 2
    # meanwhile the heartbeats kept going and said what held the readings up
    errors = influx.query(
        'SELECT "lastError" FROM "device_health" WHERE "device_id" = $d', d=agent.device_id
    )
    assert any("driver read still running after 1 s" in (r["lastError"] or "") for r in errors)


def test_a_command_still_being_applied_at_stop_is_answered_before_the_agent_leaves(
    mosquitto: Mosquitto, influx: Influx, ingester: IngesterProcess, city: str, tmp_path: Path,
    agents: list,
) -> None:  # fmt: skip
    """The command waits on the driver thread behind a 2 s read when SIGTERM comes."""
    agent = AgentProcess(
        smartcity_env(mosquitto.url, influx, city), tmp_path, "sl-late",
        "--driver-options", '{"read_delay": 2}', "--drain-timeout", "10",
    )  # fmt: skip
    result_topic = topic("streetlight", agent.device_id, "cmd_result", city)
    op = Operator(mosquitto)
    try:
        op.watch(result_topic)
        agents.append(agent.start())
        agent.wait_log("connected to broker")
        op.send(
            topic("streetlight", agent.device_id, "cmd", city),
            b'{"v":1,"id":"late","action":"switch","state":"off"}',
        )
        time.sleep(0.3)  # received, and queued behind the read
        assert op.results.get(result_topic) is None, "the read should still hold the driver"
        assert agent.stop() == 0
        results = op.wait_results(result_topic, 1, timeout=5)
    finally:
        op.close()
    assert [(r["id"], r["status"]) for r in results] == [("late", "accepted")]


# -- a device sees only its own commands (per-device logins and ACL) ----------------------------


@pytest.fixture
def acl_mosquitto(tmp_path: Path, city: str) -> Iterator[AuthBroker]:
    """The platform's broker accounts (smartcity/broker_acl.py): devices sl-a, sl-b and sl-c
    made as operators make them, and a test-only ``operator`` that sends commands (no service
    of the platform sends any yet)."""
    auth = auth_broker_at(tmp_path / "acl-mosquitto", city, "log_type subscribe\n")
    for _ in running(auth.broker):
        for device in ("sl-a", "sl-b", "sl-c"):
            auth.passwords[device] = auth.add_device("streetlight", device)
        auth.passwords["operator"] = new_password()
        acls = [{"acltype": "publishClientSend", "topic": f"smartcity/v1/{city}/+/+/cmd",
                 "allow": True}, *(
                {"acltype": t, "topic": f"smartcity/v1/{city}/+/+/cmd_result", "allow": True}
                for t in ("subscribePattern", "publishClientReceive"))]  # fmt: skip
        broker_accounts.run(auth.admin, {"command": "createRole", "rolename": "operator",
                                         "acls": acls})  # fmt: skip
        broker_accounts.create_client(
            auth.admin, "operator", auth.passwords["operator"], "operator", ["operator"]
        )
        yield auth


def subscriptions(broker: Mosquitto, client_id: str) -> set[str]:
    """What the broker logged ``client_id`` subscribing to (``log_type subscribe``)."""
    pattern = re.compile(rf"^\d+: {re.escape(client_id)} \d (\S+)$", re.MULTILINE)
    return set(pattern.findall(broker.log_path.read_text()))


def test_an_agent_never_receives_another_devices_commands(
    acl_mosquitto: AuthBroker, city: str, tmp_path: Path, agents: list
) -> None:
    auth = acl_mosquitto
    env = agent_env(auth.broker.url, city)
    for device_id in ("sl-a", "sl-b"):
        agent = AgentProcess(
            env, tmp_path, device_id, "--username", device_id,
            "--password", auth.passwords[device_id],
        )  # fmt: skip
        agents.append(agent.start())
        agent.wait_log("connected to broker")
    op = Operator(auth.broker, "operator", auth.passwords["operator"], "operator")
    # device C, logged in as itself, tries to listen to B's commands and to speak for B
    spy = Operator(auth.broker, "sl-c", auth.passwords["sl-c"], "sl-c")
    try:
        cmd = {d: topic("streetlight", d, "cmd", city) for d in ("sl-a", "sl-b")}
        res = {d: topic("streetlight", d, "cmd_result", city) for d in ("sl-a", "sl-b")}
        op.watch(*res.values())
        spy.watch(cmd["sl-b"])
        assert spy.suback.is_failure, "the broker refuses the subscription itself"
        op.send(cmd["sl-b"], b'{"v":1,"id":"for-b","action":"switch","state":"off"}')
        op.send(cmd["sl-a"], b'{"v":1,"id":"for-a","action":"switch","state":"on"}')
        assert [r["id"] for r in op.wait_results(res["sl-b"], 1)] == ["for-b"]
        assert [r["id"] for r in op.wait_results(res["sl-a"], 1)] == ["for-a"]
        as_b = spy.send(topic("streetlight", "sl-b", "telemetry", city), b"{}")
        command_b = spy.send(cmd["sl-b"], b'{"v":1,"id":"from-c","action":"switch","state":"on"}')
        time.sleep(1.0)  # time for anything wrongly routed to arrive
        assert spy.results == {}, "C received B's command"
        assert str(spy.acks[as_b]) == "Not authorized"
        assert str(spy.acks[command_b]) == "Not authorized"
        assert op.results.keys() == {res["sl-a"], res["sl-b"]}
        assert all(len(v) == 1 for v in op.results.values()), op.results
    finally:
        op.close()
        spy.close()
    # what each agent itself asked the broker for: its own command topic, nothing else
    assert subscriptions(auth.broker, "sl-a") == {cmd["sl-a"]}
    assert subscriptions(auth.broker, "sl-b") == {cmd["sl-b"]}


# -- the installer's field check -----------------------------------------------------------------


def agent_config(path: Path, mqtt_url: str, city: str, **edge: str) -> Path:
    lines = [f'mqtt_url = "{mqtt_url}"', f'city = "{city}"', "[edge]"]
    values = {
        "device_type": "streetlight", "device_id": "sl-check", "driver": "simulated",
        "zone": "Po", "outbox": str(path.parent / "check-outbox.sqlite"), **edge,
    }  # fmt: skip
    lines += [f'{k} = "{v}"' for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def check(config: Path) -> subprocess.CompletedProcess[str]:
    out = run_smartcity("edge", "check", "--config", str(config), env=smartcity_env_clean())
    assert "Traceback" not in out.stdout + out.stderr, out.stdout + out.stderr
    return out


def smartcity_env_clean() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SMARTCITY_")}


def agent_env(mqtt_url: str, city: str) -> dict[str, str]:
    return {**smartcity_env_clean(), "SMARTCITY_MQTT_URL": mqtt_url, "SMARTCITY_CITY": city}


def test_check_passes_and_its_test_reading_is_stored(
    mosquitto: Mosquitto, influx: Influx, ingester: IngesterProcess, city: str, tmp_path: Path
) -> None:
    out = check(agent_config(tmp_path / "agent.toml", mosquitto.url, city))
    assert out.returncode == 0, out.stdout
    steps = [line.split()[0] for line in out.stdout.splitlines()[:-1]]
    assert steps.count("PASS") == 6, out.stdout
    assert "FAIL" not in steps
    assert "edge check PASSED" in out.stdout
    # the test reading is a real one: stored, with the next seq of the device
    assert influx.wait_for_count("streetlight", 1) == 1
    assert seq_stats(influx, "sl-check") == (1, 0, 0)
    out = check(agent_config(tmp_path / "agent.toml", mosquitto.url, city))
    assert out.returncode == 0
    assert influx.wait_for_count("streetlight", 2) == 2
    assert seq_stats(influx, "sl-check") == (2, 0, 1)


def test_check_refuses_to_log_in_beside_a_running_agent(
    mosquitto: Mosquitto, city: str, tmp_path: Path, agents: list
) -> None:
    """The broker binds a device's login to its id, so the check logs in as the device: beside
    a live agent it would disconnect it (and a clean start would wipe its session)."""
    config = agent_config(tmp_path / "agent.toml", mosquitto.url, city)
    agent = AgentProcess(agent_env(mosquitto.url, city), tmp_path, "sl-check")
    agent.outbox = tmp_path / "check-outbox.sqlite"
    agent.args[agent.args.index("--outbox") + 1] = str(agent.outbox)
    agents.append(agent.start())
    agent.wait_log("connected to broker")
    out = check(config)
    assert out.returncode == 1, out.stdout
    assert "another agent is using the outbox" in out.stdout
    assert "SKIP  broker" in out.stdout
    assert agent.log().count("connected to broker") == 1, agent.log()


@pytest.mark.parametrize(
    ("problem", "fails", "advice"),
    [
        ("wrong port", "FAIL  broker", "nothing listens there"),
        ("bad password", "FAIL  broker", "check username and password"),
        ("no credentials", "no broker username and password are set", "SMARTCITY_EDGE_PASSWORD"),
        ("bad config", "FAIL  config", "device_type"),
        ("other device's id", "FAIL  broker", "its own device id as client id"),
        ("other device's topic", "FAIL  publish", "let user 'sl-a' write"),
    ],
)
def test_check_fails_with_the_next_step(
    acl_mosquitto: AuthBroker, city: str, tmp_path: Path, problem: str, fails: str, advice: str
) -> None:
    secret = acl_mosquitto.passwords["sl-a"]
    port = acl_mosquitto.broker.port
    url = f"mqtt://sl-a:{secret}@127.0.0.1:{port}"
    edge = {"device_id": "sl-a"}
    if problem == "wrong port":
        url = f"mqtt://sl-a:{secret}@127.0.0.1:{free_port()}"
    elif problem == "bad password":
        url = f"mqtt://sl-a:wrong@127.0.0.1:{port}"
    elif problem == "no credentials":
        url = f"mqtt://127.0.0.1:{port}"
    elif problem == "bad config":
        edge["device_type"] = "toaster"
    elif problem == "other device's id":
        edge["device_id"] = "sl-b"  # logged in as sl-a, so with client id sl-b
    else:  # logged in as sl-a with its own client id, checking sl-b's topics
        edge |= {"device_id": "sl-b", "client_id": "sl-a"}
    out = check(agent_config(tmp_path / "agent.toml", url, city, **edge))
    assert out.returncode == 1, out.stdout
    assert fails in out.stdout
    assert "next:" in out.stdout
    assert advice in out.stdout
    assert "edge check FAILED" in out.stdout
    assert secret not in out.stdout  # never print the password


# -- TLS ------------------------------------------------------------------------------------------


def test_tls_with_the_operators_ca_passes_and_without_it_fails_with_advice(
    tls_mosquitto: tuple[Mosquitto, int, Path], city: str, tmp_path: Path, agents: list
) -> None:
    broker, tls_port, ca = tls_mosquitto
    url = f"mqtts://127.0.0.1:{tls_port}"
    out = check(agent_config(tmp_path / "agent.toml", url, city, ca_file=str(ca)))
    assert out.returncode == 0, out.stdout
    out = check(agent_config(tmp_path / "agent.toml", url, city))
    assert out.returncode == 1
    assert "set ca_file" in out.stdout
    out = check(agent_config(tmp_path / "agent.toml", f"mqtts://127.0.0.1:{broker.port}", city))
    assert out.returncode == 1
    assert "is this a TLS port" in out.stdout
    # and the agent itself streams over TLS
    op = Operator(broker)
    try:
        op.watch(topic("streetlight", "sl-tls", "telemetry", city))
        agent = AgentProcess(agent_env(url, city), tmp_path, "sl-tls", "--ca-file", str(ca))
        agents.append(agent.start())
        deadline = time.monotonic() + 20
        while len(op.readings) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert agent.stop() == 0
    finally:
        op.close()
    assert len(op.readings) >= 5
