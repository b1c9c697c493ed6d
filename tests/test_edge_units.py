"""The edge agent's parts on their own: outbox, commands, drivers, settings (no servers needed)."""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.commands import CommandHandler
from edge.drivers import DRIVERS, CommandRejected, Driver, DriverError, Sample
from edge.drivers.thread import DriverThread
from edge.outbox import Outbox, OutboxError
from edge.settings import EdgeSettings
from smartcity.contract import (
    InvalidMessage,
    decode,
    decode_command,
    encode_events,
    encode_stored,
    encode_telemetry,
    topic,
)
from smartcity.devices import DEVICE_TYPES
from smartcity.settings import SettingsError, add_arguments, load

NIGHT = datetime(2026, 1, 15, 21, 0, tzinfo=UTC)  # lamps lit in Cremona


def settings(device_type: str = "streetlight", **extra: object) -> EdgeSettings:
    return EdgeSettings(
        device_type=device_type, device_id=f"{device_type[:2]}-1", driver="simulated", **extra
    )


def driver(device_type: str) -> Driver:
    return DRIVERS["simulated"][device_type](settings(device_type))


def samples(drv: Driver, n: int, start: datetime = NIGHT) -> list:
    return [drv.read(start + timedelta(seconds=60 * i)) for i in range(n)]


# -- outbox -------------------------------------------------------------------------------------


@pytest.fixture
def open_outbox(tmp_path: Path) -> Iterator[Callable[..., Outbox]]:
    """Opens outboxes in this test's folder and closes them all afterwards."""
    opened: list[Outbox] = []

    def open_(max_items: int = 1000, exclusive: bool = True) -> Outbox:
        box = Outbox(tmp_path / "o.sqlite", max_items, exclusive=exclusive)
        opened.append(box)
        return box

    yield open_
    for box in opened:
        box.close()


def fill(outbox: Outbox, drv: Driver, n: int) -> None:
    """``n`` readings in one transaction (one fsync: the disk is shared with other tests)."""
    outbox.store([r for s in samples(drv, n) for r in s.readings], [])


def stored_seqs(outbox: Outbox) -> list[int]:
    rows = outbox.db.execute("SELECT body FROM outbox WHERE channel = 'telemetry' ORDER BY id")
    return [json.loads(body)["seq"] for (body,) in rows]


def test_outbox_numbers_readings_and_keeps_counting_after_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    drv = driver("streetlight")
    with Outbox(path, 1000) as box:
        fill(box, drv, 5)
    with Outbox(path, 1000) as box:
        fill(box, drv, 3)
        assert stored_seqs(box) == list(range(8))
        assert (box.depth, box.next_seq, box.dropped) == (8, 8, 0)
        assert box.db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_outbox_batches_are_valid_telemetry_in_order_and_leave_only_when_removed(
    open_outbox: Callable[..., Outbox],
) -> None:
    box = open_outbox()
    drv = driver("evcharger")
    fill(box, drv, 7)
    first = box.batch(0, 3)
    assert first is not None
    second = box.batch(first.last, 3)
    assert second is not None
    payload = encode_stored(first.channel, first.items, "Centro")
    msg = decode(topic("evcharger", "ev-1", "telemetry"), payload)
    assert [r.seq for r in msg.body.readings] == [0, 1, 2]  # type: ignore[union-attr]
    assert box.remove(first) == 3
    assert box.depth == 4
    again = box.batch(0, 100)
    assert again is not None
    assert again.first == second.first  # nothing acknowledged is sent again, nothing skipped
    assert len(again.items) == 4


def test_outbox_full_drops_the_oldest_and_counts_them(open_outbox: Callable[..., Outbox]) -> None:
    box = open_outbox(10)
    fill(box, driver("wastebin"), 25)
    assert box.depth == 10
    assert box.dropped == 15
    assert stored_seqs(box) == list(range(15, 25))
    box.close()
    assert open_outbox(10).dropped == 15  # persisted


def test_rows_dropped_while_in_flight_and_then_acknowledged_are_not_counted_as_lost(
    open_outbox: Callable[..., Outbox],
) -> None:
    box = open_outbox(10)
    drv = driver("streetlight")
    fill(box, drv, 10)
    in_flight = box.batch(0, 5)
    assert in_flight is not None
    fill(box, drv, 3)  # full: the three oldest go, and they are in flight
    assert box.dropped == 3
    assert box.remove(in_flight) == 2
    assert box.dropped == 0  # the broker has them all
    assert box.depth == 8
    assert stored_seqs(box) == list(range(5, 13))
    gone = box.batch(0, 2)
    assert gone is not None
    fill(box, drv, 4)  # depth 12 > 10: the two in this batch go again
    assert box.again(gone) is None  # nothing of it left to send again
    assert box.dropped == 2


def test_outbox_splits_batches_by_channel_and_by_payload_size(
    open_outbox: Callable[..., Outbox],
) -> None:
    box = open_outbox(100_000)
    drv = driver("evcharger")
    (sample,) = samples(drv, 1)
    from smartcity.devices.evcharger import SessionStarted

    event = SessionStarted(ts=NIGHT, kind="sessionStart", connectorId=1, sessionId="s-1")
    box.store(sample.readings, [event])
    box.store(sample.readings, [])
    channels = []
    after = 0
    while (b := box.batch(after, 1000)) is not None:
        channels.append((b.channel, len(b.items)))
        after = b.last
    assert channels == [("telemetry", 1), ("events", 1), ("telemetry", 1)]
    # as the outbox stores it: fields left unset (idTagHash) are left out
    events_payload = encode_stored(
        "events", [event.model_dump_json(exclude_none=True).encode()], "Po"
    )
    assert events_payload == encode_events([event], "Po")
    # a backlog of big readings never makes a message over the contract's limit
    fill(box, drv, 1500)
    after, sizes = 0, []
    while (b := box.batch(after, 1000)) is not None:
        payload = encode_stored(b.channel, b.items, "Centro")
        decode(topic("evcharger", "ev-1", b.channel), payload)  # raises if too large
        sizes.append(len(b.items))
        after = b.last
    assert sum(sizes) == 1500 + 3


def test_encode_stored_gives_the_message_encode_telemetry_gives() -> None:
    for name in DEVICE_TYPES:
        readings = [r for s in samples(driver(name), 3) for r in s.readings]
        items = [r.model_dump_json(exclude_none=True).encode() for r in readings]
        where = topic(name, "x-1", "telemetry")
        assert encode_stored("telemetry", items, "Po") == encode_telemetry(readings, "Po")
        for zone in (None, "Sant'Ambrogio"):
            stored = decode(where, encode_stored("telemetry", items, zone))
            assert stored == decode(where, encode_telemetry(readings, zone))


def test_a_second_agent_cannot_open_the_same_outbox(open_outbox: Callable[..., Outbox]) -> None:
    first = open_outbox()
    with pytest.raises(OutboxError, match="another agent"):
        open_outbox()
    open_outbox(exclusive=False)  # the field check reads it beside the agent
    first.close()
    open_outbox()


def test_outbox_in_an_unwritable_place_says_what_to_do(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutboxError, match="--outbox"):
        Outbox(blocker / "o.sqlite", 10)


def test_take_seq_keeps_the_sequence_gap_free(open_outbox: Callable[..., Outbox]) -> None:
    box = open_outbox()
    drv = driver("streetlight")
    fill(box, drv, 2)
    assert box.take_seq() == 2
    fill(box, drv, 1)
    assert stored_seqs(box) == [0, 1, 3]


def test_what_is_stored_is_committed_at_once(open_outbox: Callable[..., Outbox]) -> None:
    """Another connection sees every stored reading while the agent still runs (no buffering)."""
    box = open_outbox()
    fill(box, driver("streetlight"), 4)
    other = sqlite3.connect(box.path)
    assert other.execute("SELECT count(*) FROM outbox").fetchone() == (4,)
    other.close()


# -- commands: every device type accepts its commands and refuses bad ones -----------------------

#: Per device type: (valid command, check of its effect on the driver), and invalid commands with
#: a word their reason must contain. A new device type must add its own here.
COMMANDS: dict[str, tuple[list[tuple[dict, object]], list[tuple[dict, str]]]] = {
    "streetlight": (
        [
            ({"action": "switch", "state": "off"}, lambda r: r.powerState == "off"),
            ({"action": "switch", "state": "on"}, lambda r: r.powerState == "on"),
            ({"action": "dim", "level": 0.3}, lambda r: r.illuminanceLevel == 0.3),
            (
                {"action": "schedule", "steps": [{"start": 20, "end": 23.5, "level": 0.6}]},
                lambda r: r.illuminanceLevel == 0.6,
            ),
            ({"action": "switch", "state": "auto"}, lambda r: r.powerState in ("on", "low")),
        ],
        [
            ({"action": "dim", "level": 1.5}, "level"),
            ({"action": "switch", "state": "blink"}, "state"),
            ({"action": "schedule", "steps": [{"start": 3, "end": 3, "level": 0.5}]}, "same hour"),
            ({"action": "setInterval", "interval": 60}, "action"),
        ],
    ),
    "evcharger": (
        [
            (
                {"action": "setConnector", "connectorId": 1, "enabled": False},
                lambda r: r.connectors[0].status == "Unavailable",
            ),
        ],
        [
            ({"action": "setConnector", "connectorId": 9, "enabled": False}, "connectorId"),
            ({"action": "setConnector", "connectorId": 1, "enabled": "no"}, "enabled"),
        ],
    ),
    "wastebin": (
        [({"action": "setInterval", "interval": 600}, None)],
        [({"action": "setInterval", "interval": 1}, "interval")],
    ),
    "airquality": (
        [({"action": "setInterval", "interval": 300}, None)],
        [
            ({"action": "setInterval", "interval": 1}, "interval"),
            ({"action": "dim", "level": 0.5}, "action"),
        ],
    ),
}


def test_every_device_type_has_command_examples() -> None:
    assert set(COMMANDS) == set(DEVICE_TYPES)


@pytest.mark.parametrize("device_type", sorted(COMMANDS))
def test_valid_commands_are_applied_and_take_effect(device_type: str) -> None:
    drv = driver(device_type)
    handler = CommandHandler(device_type, drv, "cmd")
    now = NIGHT
    for i, (body, effect) in enumerate(COMMANDS[device_type][0]):
        result = handler.handle("cmd", json.dumps({"v": 1, "id": f"c{i}", **body}).encode())
        assert result is not None
        assert (result.status, result.id, result.reason) == ("accepted", f"c{i}", None)
        now += timedelta(seconds=60)
        (reading,) = drv.read(now).readings
        if effect is not None:
            assert effect(reading), (body, reading)  # type: ignore[operator]
    if device_type == "wastebin":
        assert drv.interval == 600


@pytest.mark.parametrize("device_type", sorted(COMMANDS))
def test_invalid_commands_are_rejected_with_the_reason(device_type: str) -> None:
    handler = CommandHandler(device_type, driver(device_type), "cmd")
    for i, (body, word) in enumerate(COMMANDS[device_type][1]):
        result = handler.handle("cmd", json.dumps({"v": 1, "id": f"bad{i}", **body}).encode())
        assert result is not None
        assert result.status == "rejected"
        assert result.id == f"bad{i}"
        assert word in (result.reason or ""), result.reason


@pytest.mark.parametrize(
    ("payload", "word"),
    [
        (b"not json", "bad_json"),
        (b"[1, 2]", "object"),
        (b'{"v": 1, "action": "switch", "state": "on"}', "id"),
        (b'{"v": 2, "id": "x", "action": "switch", "state": "on"}', "v"),
        (b'{"v": 1, "id": "x", "action": "switch", "state": "on", "extra": 1}', "extra"),
        (b'{"v": 1, "id": "bad id!", "action": "switch", "state": "on"}', "id"),
        (b"\xff\xfe", "bad_json"),
        (b"[" * 100_000, "bad_json"),
        (b"{}" + b" " * 300_000, "too_large"),
    ],
)
def test_malformed_commands_get_a_reason_and_never_raise(payload: bytes, word: str) -> None:
    handler = CommandHandler("streetlight", driver("streetlight"), "cmd")
    result = handler.handle("cmd", payload)
    assert result is not None
    assert result.status == "rejected"
    assert word in (result.reason or "")
    assert result.id in (None, "x")


def test_a_message_on_another_topic_is_ignored_not_applied() -> None:
    drv = driver("streetlight")
    handler = CommandHandler("streetlight", drv, "mine/cmd")
    body = b'{"v": 1, "id": "x", "action": "switch", "state": "off"}'
    assert handler.handle("someone-else/cmd", body) is None
    assert drv.device.forced is None  # type: ignore[attr-defined]


def test_driver_refusal_reaches_the_result() -> None:
    drv = driver("evcharger")
    count = len(drv.device.connectors)  # type: ignore[attr-defined]
    command = decode_command(
        "evcharger", b'{"v":1,"id":"c","action":"setConnector","connectorId":8,"enabled":true}'
    )
    with pytest.raises(CommandRejected, match=f"connectors 1-{count}"):
        drv.apply(command)


def test_commands_of_one_type_are_invalid_for_another() -> None:
    with pytest.raises(InvalidMessage, match="setInterval"):
        decode_command("wastebin", b'{"v":1,"id":"c","action":"dim","level":0.5}')


# -- settings -----------------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--config")
    add_arguments(p, EdgeSettings)
    return p.parse_args(argv)


def test_settings_from_a_config_file_section(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        'mqtt_url = "mqtts://sl-7:s3cret@broker.example:8883"\n'
        '[edge]\ndevice_type = "streetlight"\ndevice_id = "sl-7"\ndriver = "simulated"\n'
        'zone = "Po"\noutbox = "/var/lib/smartcity-edge/outbox.sqlite"\n'
    )
    s = load(EdgeSettings, parse("--config", str(cfg)))
    assert s.credentials() == ("sl-7", "s3cret")
    assert s.reading_interval == DEVICE_TYPES["streetlight"].report_interval_s
    assert s.mqtt_client_id == "sl-7"
    s = load(EdgeSettings, parse("--config", str(cfg), "--password", "other", "--interval", "5"))
    assert s.credentials() == ("sl-7", "other")
    assert s.reading_interval == 5
    assert "other" not in repr(s)


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["--device-type", "toaster", "--device-id", "t-1", "--driver", "simulated"],
         "device_type"),
        (["--device-type", "wastebin", "--device-id", "bad id", "--driver", "simulated"],
         "device_id"),
        (["--device-type", "wastebin", "--device-id", "wb-1", "--driver", "modbus"], "driver"),
        (["--device-type", "wastebin", "--driver", "simulated"], "device_id"),
        (["--device-type", "wastebin", "--device-id", "w", "--driver", "simulated", "--lat", "45"],
         "lat and lon"),
        (["--device-type", "wastebin", "--device-id", "w", "--driver", "simulated",
          "--ca-file", "/nonexistent/ca.pem"], "ca_file"),
    ],
)  # fmt: skip
def test_bad_settings_name_what_to_fix(argv: list[str], name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load(EdgeSettings, parse(*argv))


def test_the_agent_needs_only_the_edge_extra() -> None:
    """With the server-side packages unimportable, the agent, its check and its CLI still load."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for name in ('aiomqtt', 'httpx', 'fastapi', 'uvicorn', 'sqlalchemy'):\n"
        "    sys.modules[name] = None\n"
        "import edge.agent, edge.check, edge.cli\n"
        "from stack.cli import build_parser\n"
        "args = build_parser().parse_args(['edge', 'run', '--device-type', 'wastebin'])\n"
        "assert args.func.__module__ == 'edge.cli'\n"
        # a server's command on a controller: what to install, not a traceback
        "try:\n"
        "    build_parser(['storage', 'init'])\n"
        "except SystemExit as exc:\n"
        "    assert 'smartcity-cremona[server]' in str(exc), exc\n"
        "else:\n"
        "    raise AssertionError('storage loaded without its packages')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


def test_an_edge_command_line_loads_no_other_component() -> None:
    """Every module the agent imports stays in its RSS (docs/edge.md, *Footprint*)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from stack.cli import build_parser\n"
        "argv = ['edge', 'run', '--device-type', 'wastebin']\n"
        "build_parser(argv).parse_args(argv)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ingest', 'api', 'grafana')\n"
        "    or m in ('stack.up', 'simulators.cli', 'simulators.settings')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- what an installer copies -------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def test_the_sample_agent_config_is_valid() -> None:
    s = load(EdgeSettings, parse("--config", str(ROOT / "deploy/edge/agent.toml")))
    assert s.credentials() == (s.device_id, "change-me")
    assert s.outbox_path.parent == Path("/var/lib/smartcity-edge")


def test_the_systemd_unit_runs_the_agent_with_its_state_directory() -> None:
    import shlex

    from edge import cli
    from stack.cli import build_parser

    unit = (ROOT / "deploy/systemd/smartcity-edge.service").read_text().splitlines()
    value = {k: v for k, _, v in (line.partition("=") for line in unit if "=" in line)}
    argv = shlex.split(value["ExecStart"])
    assert Path(argv[0]).name == "smartcity"
    args = build_parser().parse_args(argv[1:])
    assert args.func is cli.run
    assert args.config == "/etc/smartcity/edge.toml"
    assert f"/var/lib/{value['StateDirectory']}" == str(
        load(
            EdgeSettings, parse("--config", str(ROOT / "deploy/edge/agent.toml"))
        ).outbox_path.parent
    )


# -- the driver interface and its thread ----------------------------------------------------------


class Recorder(Driver):
    """A driver that records which hook ran on which thread, and fails to start once."""

    device_type = DEVICE_TYPES["streetlight"]

    def __init__(self, settings: EdgeSettings) -> None:
        super().__init__(settings)
        self.calls: list[tuple[str, str]] = []
        self.start_failures = 1

    def _note(self, what: str) -> None:
        import threading

        self.calls.append((what, threading.current_thread().name))

    def start(self) -> None:
        self._note("start")
        if self.start_failures:
            self.start_failures -= 1
            raise DriverError("no answer from 10.0.0.5:502")

    def read(self, now: datetime) -> Sample:
        self._note("read")
        return Sample()

    def apply(self, command: object) -> None:
        self._note("apply")

    def close(self) -> None:
        self._note("close")


def test_the_driver_thread_starts_the_driver_first_retries_a_failed_start_and_closes_it() -> None:
    drv = Recorder(settings())
    worker = DriverThread(drv)
    failed = worker.submit(drv.read, NIGHT)
    with pytest.raises(DriverError, match="no answer"):
        failed.result(5)
    assert worker.submit(drv.read, NIGHT).result(5) == Sample()
    assert worker.close(5)
    assert [what for what, _ in drv.calls] == ["start", "start", "read", "close"]
    assert {thread for _, thread in drv.calls} == {"driver-st-1"}  # never the caller's thread


def test_a_driver_whose_start_failed_is_closed_without_starting_it_again() -> None:
    drv = Recorder(settings())
    worker = DriverThread(drv)
    with pytest.raises(DriverError):
        worker.submit(drv.read, NIGHT).result(5)
    assert worker.close(5)
    assert [what for what, _ in drv.calls] == ["start", "close"]


def test_a_call_that_blocks_does_not_block_the_caller() -> None:
    import threading

    release = threading.Event()
    drv = driver("streetlight")
    worker = DriverThread(drv)
    stuck = worker.submit(release.wait, 30)
    queued = worker.submit(drv.read, NIGHT)
    assert not stuck.done()
    assert not queued.done()  # one call at a time, in order
    release.set()
    assert len(queued.result(5).readings) == 1
    assert worker.close(5)


def test_driver_options_come_from_the_config_table_and_typos_are_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        '[edge]\ndevice_type = "wastebin"\ndevice_id = "wb-1"\ndriver = "simulated"\n'
        "[edge.driver_options]\nread_delay = 0.5\n"
    )
    s = load(EdgeSettings, parse("--config", str(cfg)))
    assert driver_for(s).options.read_delay == 0.5  # type: ignore[attr-defined]
    s = load(EdgeSettings, parse("--config", str(cfg), "--driver-options", '{"read_delay": 2}'))
    assert driver_for(s).options.read_delay == 2  # type: ignore[attr-defined]
    for bad, word in (
        ('{"read_dealy": 2}', "read_dealy"),
        ("{oops", "JSON"),
        ('{"read_delay": -1}', "read_delay"),
    ):
        with pytest.raises(SettingsError, match=word):
            load(EdgeSettings, parse("--config", str(cfg), "--driver-options", bad))


def driver_for(s: EdgeSettings) -> Driver:
    return DRIVERS[s.driver][s.device_type](s)


def test_the_rules_in_the_installers_guide_are_the_deployed_ones() -> None:
    """docs/edge.md lists what a device's account allows; the broker gets it from broker_acl."""
    from smartcity.broker_acl import device_account

    guide = (ROOT / "docs/edge.md").read_text()
    block = guide.split("# role device-sl-00042", 1)[1].split("\n", 1)[1].split("```", 1)[0]
    documented = [line.split() for line in block.splitlines() if line.strip()]
    deployed = device_account("streetlight", "sl-00042", "cremona").rules
    assert documented == [[rule.access, rule.topic] for rule in deployed]


def test_the_agent_imports_neither_pydantic_settings_nor_asyncio() -> None:
    """Footprint (issue 3): pydantic-settings, and the asyncio it imports, cost 4.6 MB of RSS."""
    import subprocess
    import sys

    code = (
        "import sys, stack.cli, edge.cli, edge.agent, edge.settings\n"
        "print(sorted(m for m in ('pydantic_settings', 'asyncio', 'dotenv') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
