"""``smartcity edge check``: the installer's field test, one line per step and what to do next.

It runs what the agent will run, once: settings, outbox, one driver read (a field bus driver
first reads each mapped register on its own and shows its value and unit), broker login, the
command subscription, and one real reading published and acknowledged. The reading takes the
next ``seq`` from the outbox, so the device's sequence stays gap-free. It connects with the
device's own client id (the broker binds each login to it, and refuses any other), with a clean
session and no Last Will; so it holds the outbox's lock and runs only while the agent is stopped,
never disconnecting a live agent or wiping its session.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge import mqtt
from edge.drivers import DRIVERS, Probe
from edge.outbox import Outbox, OutboxError
from edge.settings import EdgeSettings
from smartcity.contract import encode_telemetry, topic
from smartcity.devices import Reading
from smartcity.settings import SettingsError, load, mqtt_endpoint, safe_url

#: Seconds to wait for each answer from the broker.
ANSWER_TIMEOUT = 10.0


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failed: int = 0
    passed: int = 0

    def ok(self, step: str, detail: str) -> None:
        self.passed += 1
        self.lines.append(f"PASS  {step:<9} {detail}")

    def fail(self, step: str, detail: str, next_step: str) -> None:
        self.failed += 1
        self.lines.append(f"FAIL  {step:<9} {detail}")
        self.lines.append(f"      {'':<9} next: {next_step}")

    def warn(self, step: str, detail: str) -> None:
        self.lines.append(f"WARN  {step:<9} {detail}")

    def skip(self, step: str, why: str) -> None:
        self.lines.append(f"SKIP  {step:<9} {why}")

    def render(self) -> str:
        verdict = (
            f"edge check PASSED ({self.passed} steps)"
            if not self.failed
            else f"edge check FAILED ({self.failed} failed, {self.passed} passed)"
        )
        return "\n".join([*self.lines, verdict])


def run(args: argparse.Namespace) -> int:
    report = Report()
    try:
        _check(args, report)
    finally:
        print(report.render(), flush=True)
    return 1 if report.failed else 0


def _check(args: argparse.Namespace, report: Report) -> None:
    try:
        settings = load(EdgeSettings, args)
    except SettingsError as exc:
        report.fail(
            "config",
            str(exc).replace("\n", "\n" + " " * 16),
            "fix the named keys in the config file's [edge] section (or the flag / "
            "SMARTCITY_EDGE_* variable), then run the check again",
        )
        return
    where = getattr(args, "config", None) or "flags and environment"
    report.ok(
        "config",
        f"{where}: {settings.device_type} {settings.device_id}, driver {settings.driver}, "
        f"broker {safe_url(settings.mqtt_url)}",
    )
    outbox = _check_outbox(settings, report)
    if outbox is None and _agent_running(settings):
        for step in ("driver", "broker", "commands", "publish"):
            report.skip(step, "the agent is running: stop it first (its login is this device's)")
        return
    reading = _check_driver(settings, report)
    _check_broker(settings, report, outbox, reading)
    if outbox is not None:
        outbox.close()


def _check_outbox(settings: EdgeSettings, report: Report) -> Outbox | None:
    path = settings.outbox_path
    try:
        outbox = Outbox(path, settings.outbox_max)
    except OutboxError as exc:
        report.fail("outbox", exc.problem, exc.next_step)
        return None
    report.ok(
        "outbox",
        f"{path}: writable, {outbox.depth} waiting, {outbox.dropped} dropped so far, "
        f"next seq {outbox.next_seq}",
    )
    fs = _filesystem(path)
    if fs in ("tmpfs", "ramfs"):
        report.warn("outbox", f"{path} is on {fs}: readings waiting there are lost on reboot")
    return outbox


def _agent_running(settings: EdgeSettings) -> bool:
    """Whether an agent holds this device's outbox (so the check must not log in)."""
    try:
        Outbox(settings.outbox_path, settings.outbox_max).close()
    except OutboxError as exc:
        return "another agent" in exc.problem
    return False


def _check_driver(settings: EdgeSettings, report: Report) -> Reading | None:
    try:
        driver = DRIVERS[settings.driver][settings.device_type](settings)
        try:
            driver.start()
            _report_probes(report, driver.probe())
            sample = driver.read(datetime.now(UTC))
        finally:
            driver.close()
    except Exception as exc:  # whatever the device did, the installer needs to see it
        report.fail(
            "driver",
            f"reading the device failed: {type(exc).__name__}: {exc}",
            "check the device's wiring, address and power, and [edge.driver_options]",
        )
        return None
    if not sample.readings:
        report.fail(
            "driver",
            "the device answered but gave no reading",
            "wait for the device's next report and run the check again",
        )
        return None
    reading = sample.readings[0]
    shown = reading.model_dump(exclude={"ts", "seq"}, exclude_none=True)
    summary = ", ".join(f"{k}={v}" for k, v in shown.items() if not isinstance(v, list | dict))
    report.ok("driver", f"read one reading: {summary}"[:200])
    return reading


def _report_probes(report: Report, probes: list[Probe]) -> None:
    """A field bus device, register by register: what each read gave, with its unit."""
    for probe in probes:
        if probe.ok:
            report.ok("device", probe.text)
        else:
            report.fail(
                "device",
                probe.text,
                probe.next_step
                or "check the unit's slave id and wiring, and that its register map "
                "(docs/edge.md) is the device's model",
            )


def _check_broker(
    settings: EdgeSettings, report: Report, outbox: Outbox | None, reading: Reading | None
) -> None:
    client = mqtt.new_client(settings, settings.mqtt_client_id, agent=False)
    answers = _record_answers(client)
    url = safe_url(settings.mqtt_url)
    if not _login(client, settings, report, answers, url):
        report.skip("commands", "needs the broker")
        report.skip("publish", "needs the broker")
        return
    try:
        cmd = topic(settings.device_type, settings.device_id, "cmd", settings.city)
        client.subscribe(cmd, qos=1)
        suback = _answer(client, answers, "suback")
        if suback is None or mqtt.failed(suback):
            report.fail(
                "commands",
                f"the broker refused a subscription to {cmd}: {suback or 'no answer'}",
                f"ask the broker operators to let user {settings.credentials()[0]!r} read {cmd}",
            )
        else:
            report.ok("commands", f"subscribed to {cmd}")
        if reading is None or outbox is None:
            # the test reading is a real one: it needs the device and the next seq of the outbox
            report.skip("publish", "needs a reading from the driver and a usable outbox")
        else:
            _publish_test_reading(settings, report, client, answers, outbox, reading)
    finally:
        client.disconnect()
        client.loop(timeout=0.2)


def _login(
    client: paho.Client,
    settings: EdgeSettings,
    report: Report,
    answers: dict[str, ReasonCode],
    url: str,
) -> bool:
    try:
        mqtt.connect(client, settings, persistent=False)
    except OSError as exc:  # refused, unreachable, DNS, TLS
        report.fail("broker", f"cannot connect to {url}: {exc}", _connect_advice(exc, settings))
        return False
    connack = _answer(client, answers, "connack")
    if connack is None:
        closed = "closed" in answers
        report.fail(
            "broker",
            f"{url} {'closed the connection' if closed else 'did not answer'} without a CONNACK",
            "if the broker port uses TLS write mqtts:// (plain mqtt:// otherwise); check that "
            "this really is an MQTT port",
        )
        return False
    if mqtt.failed(connack):
        user, password = settings.credentials()
        if user is None or password is None:
            missing = " and ".join(
                what for what, value in (("username", user), ("password", password)) if not value
            )
            report.fail(
                "broker",
                f"{url} refused the login ({connack}): no broker {missing} "
                f"{'are' if ' and ' in missing else 'is'} set",
                "set username (usually the device id) and password in the config file's [edge] "
                "section, or --username / --password, or SMARTCITY_EDGE_USERNAME / "
                "SMARTCITY_EDGE_PASSWORD, or mqtt://user:password@host:port in mqtt_url",
            )
            return False
        report.fail(
            "broker",
            f"{url} refused the login of user {user!r}: {connack}",
            "check username and password (the ones given for this device id); the broker "
            "admits a device only with its own device id as client id (leave client_id unset); "
            "if they are right, ask the broker operators to enable this user",
        )
        return False
    report.ok("broker", f"logged in to {url} as {settings.credentials()[0] or 'anonymous'}")
    return True


def _connect_advice(exc: OSError, settings: EdgeSettings) -> str:
    host, port, tls, _, _ = mqtt_endpoint(settings.mqtt_url)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            "the broker's certificate is not trusted or not for this host name: set ca_file to "
            "the CA certificate the operators gave you, and use the host name the certificate "
            "names"
        )
    if isinstance(exc, ssl.SSLError) or (tls and isinstance(exc, ConnectionResetError)):
        return (
            "the TLS handshake failed: is this a TLS port? Use mqtts:// for TLS ports (usually "
            "8883), mqtt:// for plain ones (usually 1883)"
        )
    if isinstance(exc, socket.gaierror):
        return "the host name does not resolve: check mqtt_url and the controller's DNS settings"
    if isinstance(exc, ConnectionRefusedError):
        return (
            "nothing listens there: check host and port in mqtt_url "
            f"({'8883 is usual for mqtts://' if tls else '1883 is usual for mqtt://'}), "
            "and that the broker is running"
        )
    return (
        "the network does not reach the broker: check the controller's link, routes and any "
        f"firewall (try: nc -vz {host} {port})"
    )


def _publish_test_reading(
    settings: EdgeSettings,
    report: Report,
    client: paho.Client,
    answers: dict[str, ReasonCode],
    outbox: Outbox,
    reading: Reading,
) -> None:
    seq = outbox.take_seq()
    stamped = reading.model_copy(update={"seq": seq})
    telemetry = topic(settings.device_type, settings.device_id, "telemetry", settings.city)
    client.publish(telemetry, encode_telemetry([stamped], settings.zone), qos=1)
    puback = _answer(client, answers, "puback")
    if puback is None:
        report.fail(
            "publish",
            f"no PUBACK for the test reading on {telemetry} within {ANSWER_TIMEOUT:.0f} s",
            "the broker is overloaded or the link drops packets; run the check again",
        )
    elif mqtt.failed(puback):
        report.fail(
            "publish",
            f"the broker refused the test reading on {telemetry}: {puback}",
            f"ask the broker operators to let user {settings.credentials()[0]!r} "
            f"write {telemetry.rsplit('/', 1)[0]}/#",
        )
    else:
        report.ok("publish", f"test reading seq {seq} acknowledged on {telemetry}")


def _record_answers(client: paho.Client) -> dict[str, ReasonCode]:
    """The broker's first answer of each kind, filled in by the client's callbacks (paho's
    ``CallbackAPIVersion.VERSION2`` signatures) as the network loop runs."""
    answers: dict[str, ReasonCode] = {}

    def on_connect(
        _c: paho.Client,
        _u: object,
        _f: paho.ConnectFlags,
        reason: ReasonCode,
        _p: Properties | None,
    ) -> None:
        answers.setdefault("connack", reason)

    def on_disconnect(
        _c: paho.Client,
        _u: object,
        _f: paho.DisconnectFlags,
        reason: ReasonCode,
        _p: Properties | None,
    ) -> None:
        answers.setdefault("closed", reason)

    def on_subscribe(
        _c: paho.Client, _u: object, _mid: int, reasons: list[ReasonCode], _p: Properties | None
    ) -> None:
        answers.setdefault("suback", reasons[0])

    def on_publish(
        _c: paho.Client, _u: object, _mid: int, reason: ReasonCode, _p: Properties
    ) -> None:
        answers.setdefault("puback", reason)

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_subscribe = on_subscribe
    client.on_publish = on_publish
    return answers


def _answer(client: paho.Client, answers: dict[str, ReasonCode], key: str) -> ReasonCode | None:
    """Run the network loop until the broker's ``key`` answer arrives, or time runs out."""
    deadline = time.monotonic() + ANSWER_TIMEOUT
    while key not in answers and "closed" not in answers and time.monotonic() < deadline:
        client.loop(timeout=0.1)
    return answers.get(key)


def _filesystem(path: Path) -> str | None:
    """The type of the filesystem holding ``path`` (from /proc/mounts), if known."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    target = str(path.resolve())
    best, kind = "", None
    for line in mounts:
        parts = line.split()
        if len(parts) > 2 and target.startswith(parts[1]) and len(parts[1]) > len(best):
            best, kind = parts[1], parts[2]
    return kind
