"""The modbus driver against pymodbus's own server, over TCP and over RTU on a virtual serial pair.

The slaves hold the registers as the vendor documents them, written here from the documents'
tables and NOT from the register maps under test: the Eastron SDM630 Modbus V2 input registers
(float32, high word first; the document's own example answer to a read of 30001 is the bytes
43 66 33 34, 230.2 V to the display's precision), and the lighting controller's reference
layout (docs/edge.md). Every server is a child process, so killing it is a real outage.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError
from pymodbus import FramerType, ModbusException
from pymodbus.client import ModbusSerialClient, ModbusTcpClient

from edge.drivers import DRIVERS, CommandRejected, Driver, DriverError
from edge.drivers.modbus.registermap import SHIPPED_MAPS, Register, plan
from edge.settings import EdgeSettings
from smartcity.contract import topic
from smartcity.devices.streetlight import DimCommand, ScheduleCommand, SwitchCommand
from stack.servers import Mosquitto, free_port

from .conftest import Influx, IngesterProcess, smartcity_env
from .test_edge import (
    AgentProcess,
    Operator,
    agent_env,
    assert_every_reading_once,
    check,
    seq_stats,
    wait_for_readings,
)

SERVER = Path(__file__).parent / "modbus_server.py"
METER, CONTROLLER = 1, 2


def f32(value: float) -> list[int]:
    """IEEE 754 single precision, high word and high byte first (the SDM630's order)."""
    data = struct.pack(">f", value)
    return [int.from_bytes(data[:2], "big"), int.from_bytes(data[2:], "big")]


# The SDM630 Modbus V2 input registers (3xxxx = 30001 + address), one plausible cabinet feeding
# a lighting circuit; 30001 and 30043 carry the vendor's example answer word for word.
SDM630_EXAMPLE = [0x4366, 0x3334]  # 230.20001 V: one bit above the float32 nearest 230.2
SDM630_INPUT = {
    0x0000: SDM630_EXAMPLE,  # 30001 Phase 1 line to neutral volts
    0x0002: f32(229.8),  # 30003 Phase 2 line to neutral volts
    0x0004: f32(231.1),  # 30005 Phase 3 line to neutral volts
    0x0006: f32(1.52),  # 30007 Phase 1 current
    0x0008: f32(1.48),  # 30009 Phase 2 current
    0x000A: f32(1.5),  # 30011 Phase 3 current
    0x000C: f32(341.5),  # 30013 Phase 1 power
    0x000E: f32(332.0),  # 30015 Phase 2 power
    0x0010: f32(338.0),  # 30017 Phase 3 power
    0x002A: SDM630_EXAMPLE,  # 30043 Average line to neutral volts
    0x002E: f32(1.5),  # 30047 Average line current
    0x0030: f32(4.5),  # 30049 Sum of line currents
    0x0034: f32(1011.5),  # 30053 Total system power
    0x0046: f32(50.0),  # 30071 Frequency of supply
    0x0048: f32(12345.6),  # 30073 Total import kWh
    0x004A: f32(0.0),  # 30075 Total export kWh
}
# The controller's reference layout (docs/edge.md): relay mode auto, full output, lamp lit and
# sound, 100 W nameplate.
CONTROLLER_HOLDING = {0: [2], 1: [1000]}
CONTROLLER_INPUT = {0: [1], 1: [0], 2: [100]}

EXPECTED = {
    "voltage": 230.20001,  # the example's words, exactly
    "current": 4.5,
    "activePower": 1011.5,
    "totalActiveEnergyImport": 12345.6,
    "powerState": "on",
    "illuminanceLevel": 1.0,
    "status": "ok",
    "ratedPower": 100.0,
}


def runs(registers: dict[int, list[int]]) -> dict[str, list[int]]:
    """Adjacent registers joined into runs, as the server takes them."""
    out: dict[str, list[int]] = {}
    start = end = -1
    for address, words in sorted(registers.items()):
        if address != end:
            start = address
            out[str(start)] = []
        out[str(start)] += words
        end = address + len(words)
    return out


CABINET = {
    str(METER): {"input": runs(SDM630_INPUT)},
    str(CONTROLLER): {"holding": runs(CONTROLLER_HOLDING), "input": runs(CONTROLLER_INPUT)},
}
UNITS = [
    {"slave_id": METER, "model": "eastron-sdm630"},
    {"slave_id": CONTROLLER, "model": "lighting-controller"},
]


class ModbusServer:
    """tests/modbus_server.py as a child process, TCP on ``port`` or RTU on ``serial``."""

    def __init__(
        self,
        log: Path,
        port: int | None = None,
        serial: str | None = None,
        registers: dict = CABINET,
    ) -> None:
        self.port, self.serial, self.log, self.registers = port, serial, log, registers
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ModbusServer:
        where = ["--tcp", str(self.port)] if self.port else ["--serial", str(self.serial)]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(SERVER), *where, json.dumps(self.registers)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if self.port:
            deadline = time.monotonic() + 20
            while not _listening(self.port):
                assert self.proc.poll() is None, self.log.read_text()
                assert time.monotonic() < deadline, "the Modbus server did not start"
                time.sleep(0.05)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def holding(self, slave_id: int, address: int) -> int:
        """A holding register as the device holds it, read by a client of the test's own."""
        client = ModbusTcpClient("127.0.0.1", port=self.port or 0, timeout=2)
        try:
            assert client.connect()
            return int(client.read_holding_registers(address, device_id=slave_id).registers[0])
        finally:
            client.close()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def tcp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModbusServer]:
    server = ModbusServer(tmp_path_factory.mktemp("modbus") / "tcp.log", port=free_port())
    yield server.start()
    server.kill()


def _answers(serial_port: str) -> bool:
    client = ModbusSerialClient(serial_port, framer=FramerType.RTU, baudrate=19200, timeout=0.2)
    try:
        return not client.read_input_registers(0, device_id=METER).isError()
    except ModbusException:
        return False
    finally:
        client.close()


@pytest.fixture(scope="module")
def rtu_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The RTU slave on one end of a socat pty pair; yields the other end, for the driver."""
    socat = shutil.which("socat")
    assert socat, "socat is missing: scripts/bootstrap test installs it (apt-get install socat)"
    folder = tmp_path_factory.mktemp("rtu")
    device_end, master_end = folder / "slave", folder / "master"
    pair = subprocess.Popen(
        [socat, "pty,raw,echo=0,link=" + str(device_end), "pty,raw,echo=0,link=" + str(master_end)]
    )
    deadline = time.monotonic() + 10
    while not (device_end.exists() and master_end.exists()):
        assert pair.poll() is None, "socat exited"
        assert time.monotonic() < deadline, "socat made no serial pair"
        time.sleep(0.05)
    server = ModbusServer(folder / "rtu.log", serial=str(device_end)).start()
    deadline = time.monotonic() + 20
    while not _answers(str(master_end)):  # the server has opened its end
        assert server.proc is not None
        assert server.proc.poll() is None, server.log.read_text()
        assert time.monotonic() < deadline, "the RTU server does not answer"
    yield str(master_end)
    server.kill()
    pair.terminate()
    pair.wait(10)


def modbus_settings(**options: object) -> EdgeSettings:
    return EdgeSettings(
        device_type="streetlight",
        device_id="sl-cabinet",
        driver="modbus",
        driver_options={"units": UNITS, "timeout": 0.5, "retries": 0, **options},
    )


def started(settings: EdgeSettings) -> Driver:
    driver = DRIVERS["modbus"]["streetlight"](settings)
    driver.start()
    return driver


def read(driver: Driver) -> dict[str, object]:
    (reading,) = driver.read(datetime.now(UTC)).readings
    return reading.model_dump(exclude={"ts", "seq"})


# -- register maps, no device needed ------------------------------------------------------------


def reg(address: int, type_: str = "uint16", function: str = "input") -> Register:
    return Register.model_validate(
        {"field": f"f{address}", "address": address, "type": type_, "function": function}
    )


def test_reads_are_grouped_into_contiguous_requests_of_at_most_the_limit() -> None:
    regs = [reg(a) for a in range(130)] + [reg(200, "float32"), reg(202, "int32")]
    regs += [reg(0, function="holding"), reg(2, function="holding")]  # a hole between them
    blocks = [(b.function, b.start, b.count) for b in plan(regs, 125, 0)]
    assert blocks == [
        ("holding", 0, 1),
        ("holding", 2, 1),
        ("input", 0, 125),
        ("input", 125, 5),
        ("input", 200, 4),
    ]
    # a map that allows reading across a hole of one register joins them
    assert [(b.start, b.count) for b in plan(regs[-2:], 125, 1)] == [(0, 3)]
    # a device that takes fewer registers per request gets more requests
    assert [(b.start, b.count) for b in plan(regs[:130], 60, 0)] == [(0, 60), (60, 60), (120, 10)]


@pytest.mark.parametrize(
    ("type_", "word_order", "byte_order", "packed", "value"),
    [
        ("int16", "big", "big", struct.pack(">h", -1234), -1234),
        ("uint16", "big", "little", struct.pack("<H", 51234), 51234),
        ("int32", "big", "big", struct.pack(">i", -7654321), -7654321),
        ("uint32", "little", "big", struct.pack(">I", 3_000_000_000)[2:] + struct.pack(">I", 3_000_000_000)[:2], 3_000_000_000),  # noqa: E501
        ("float32", "little", "little", struct.pack("<f", 230.2), 230.2),
    ],
)  # fmt: skip
def test_data_types_and_word_and_byte_orders(
    type_: str, word_order: str, byte_order: str, packed: bytes, value: float
) -> None:
    words = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, len(packed), 2)]
    register = Register.model_validate(
        {"field": "x", "address": 0, "function": "input", "type": type_,
         "word_order": word_order, "byte_order": byte_order},
    )  # fmt: skip
    assert register.decode(words) == value
    assert register.encode_raw(value) == words


def map_file(folder: Path, name: str, body: str) -> str:
    (folder / f"{name}.toml").write_text(
        f'model = "{name}"\ntitle = "t"\nsource = "a test"\n' + body
    )
    return name


@pytest.mark.parametrize(
    ("units", "constants", "says"),
    [
        ([{"slave_id": 1, "model": "no-such-meter"}], {}, "no register map 'no-such-meter'"),
        ([UNITS[0]], {}, "no register map or constant gives powerState, illuminanceLevel"),
        ([UNITS[0], {"slave_id": 1, "model": "lighting-controller"}], {}, "same slave_id"),
        (UNITS, {"voltage": 230.0}, "constants.voltage also comes from eastron-sdm630"),
        (UNITS, {"luminosity": 1.0}, "constants.luminosity is not a streetlight field"),
        (
            UNITS[:1],
            {"ratedPower": 100, "status": "OK", "powerState": "on", "illuminanceLevel": 1},
            "constants: status: Input should be 'ok'",
        ),
        ([UNITS[0], {"slave_id": 2, "model": "kw"}], {}, "activePower is in 'W' in the contract"),
        ([UNITS[0], {"slave_id": 2, "model": "state"}], {}, "powerState takes one of on, off, low"),
        ([UNITS[0], {"slave_id": 2, "model": "blink"}], {}, "commands.blink: a streetlight takes"),
    ],
)
def test_a_map_that_does_not_fit_the_contract_fails_at_start_up_naming_the_key(
    tmp_path: Path, units: list, constants: dict, says: str
) -> None:
    power = 'field = "{}"\naddress = 0\nfunction = "input"\ntype = "uint16"\n'
    map_file(tmp_path, "kw", "[[registers]]\n" + power.format("activePower") + 'unit = "kW"\n')
    map_file(tmp_path, "state", "[[registers]]\n" + power.format("powerState")
             + 'values = { 0 = "off", 1 = "lit" }\n')  # fmt: skip
    map_file(tmp_path, "blink", '[commands.blink]\nparam = "rate"\naddress = 0\ntype = "uint16"\n')
    with pytest.raises(ValidationError) as err:
        modbus_settings(units=units, constants=constants, maps_dir=str(tmp_path), host="h")
    assert says in str(err.value)


# -- reading the cabinet ------------------------------------------------------------------------


def test_reads_the_meter_and_the_controller_over_tcp(tcp_server: ModbusServer) -> None:
    driver = started(modbus_settings(host="127.0.0.1", port=tcp_server.port))
    try:
        assert read(driver) == EXPECTED
    finally:
        driver.close()


def test_reads_the_meter_and_the_controller_over_rtu(rtu_server: str) -> None:
    driver = started(
        modbus_settings(transport="rtu", serial_port=rtu_server, baudrate=19200, parity="N")
    )
    try:
        assert read(driver) == EXPECTED
    finally:
        driver.close()


def test_dim_and_switch_commands_write_the_controllers_holding_registers(
    tcp_server: ModbusServer,
) -> None:
    driver = started(modbus_settings(host="127.0.0.1", port=tcp_server.port))
    try:
        driver.apply(DimCommand(v=1, id="d1", action="dim", level=0.4))
        assert tcp_server.holding(CONTROLLER, 1) == 400  # per mille
        assert read(driver)["illuminanceLevel"] == 0.4
        driver.apply(SwitchCommand(v=1, id="s1", action="switch", state="off"))
        assert tcp_server.holding(CONTROLLER, 0) == 0
        driver.apply(SwitchCommand(v=1, id="s2", action="switch", state="auto"))
        assert tcp_server.holding(CONTROLLER, 0) == 2
        with pytest.raises(CommandRejected, match="no unit on this port takes 'schedule'"):
            driver.apply(ScheduleCommand(v=1, id="x", action="schedule", steps=[]))
        driver.apply(DimCommand(v=1, id="d2", action="dim", level=1.0))
    finally:
        driver.close()
    assert tcp_server.holding(CONTROLLER, 1) == 1000


def test_a_failed_read_says_why(tcp_server: ModbusServer, tmp_path: Path) -> None:
    # an installer's map with a wrong address: the meter answers with its exception code
    wrong = (SHIPPED_MAPS / "eastron-sdm630.toml").read_text().replace("0x0048", "0x0100")
    (tmp_path / "meter-wrong.toml").write_text(wrong.replace('"eastron-sdm630"', '"meter-wrong"'))
    driver = started(
        modbus_settings(
            host="127.0.0.1",
            port=tcp_server.port,
            maps_dir=str(tmp_path),
            units=[{"slave_id": METER, "model": "meter-wrong"}, UNITS[1]],
        )
    )
    try:
        with pytest.raises(DriverError) as err:
            driver.read(datetime.now(UTC))
        assert "unit 1 (meter-wrong): exception code 2 (illegal data address)" in str(err.value)
    finally:
        driver.close()


@pytest.mark.parametrize(
    ("unit", "kind", "address", "words", "says"),
    [
        (CONTROLLER, "input", 1, [9], "unit 2 (lighting-controller): status: register value 9 is "
         "none of [0, 1, 2, 3]"),
        (METER, "input", 0x002A, f32(612.0), "do not fit the contract: voltage: Input should be "
         "less than or equal to 500"),
        (METER, "input", 0x0034, [0x7FC0, 0], "unit 1 (eastron-sdm630): activePower: the device "
         "sent nan"),
    ],
)  # fmt: skip
def test_a_value_the_contract_refuses_fails_the_read_with_the_reason(
    tmp_path: Path, unit: int, kind: str, address: int, words: list[int], says: str
) -> None:
    registers = json.loads(json.dumps(CABINET))
    table = {int(a): w for a, w in registers[str(unit)][kind].items()}
    for start, run in table.items():  # overwrite the value inside its run
        if start <= address < start + len(run):
            run[address - start : address - start + len(words)] = words
    registers[str(unit)][kind] = {str(a): w for a, w in table.items()}
    server = ModbusServer(tmp_path / "s.log", port=free_port(), registers=registers).start()
    driver = started(modbus_settings(host="127.0.0.1", port=server.port))
    try:
        with pytest.raises(DriverError) as err:
            driver.read(datetime.now(UTC))
        assert says in str(err.value)
    finally:
        driver.close()
        server.kill()


def test_a_device_that_never_answers_is_a_timeout_not_a_hang() -> None:
    with socket.create_server(("127.0.0.1", 0)) as mute:  # accepts, never answers
        port = mute.getsockname()[1]
        driver = started(
            modbus_settings(host="127.0.0.1", port=port, timeout=0.2, reconnect_min_delay=60)
        )
        try:
            with pytest.raises(DriverError, match=r"no answer \(timeout\)") as err:
                driver.read(datetime.now(UTC))
            assert "unit 1 (eastron-sdm630)" in str(err.value)
            assert "unit 2 (lighting-controller)" in str(err.value)
            # nobody answered: the line is closed, and opened again only after the back-off
            with pytest.raises(DriverError, match=r"not connected \(no unit answered\); next"):
                driver.read(datetime.now(UTC))
        finally:
            driver.close()


# -- the agent and the installer's check, through the real broker and ingester -----------------


@pytest.fixture
def agent() -> Iterator[list[AgentProcess]]:
    """The agent a test starts, killed after it whatever happened."""
    started: list[AgentProcess] = []
    yield started
    for proc in started:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.stop(signal.SIGKILL)


def agent_options(port: int) -> str:
    return json.dumps(
        {"host": "127.0.0.1", "port": port, "units": UNITS, "timeout": 0.3, "retries": 0,
         "reconnect_min_delay": 0.1, "reconnect_max_delay": 0.5}
    )  # fmt: skip


def test_a_killed_modbus_server_is_survived_with_nothing_lost(
    mosquitto: Mosquitto, influx: Influx, ingester: IngesterProcess, city: str, tmp_path: Path,
    agent: list[AgentProcess],
) -> None:  # fmt: skip
    server = ModbusServer(tmp_path / "modbus.log", port=free_port()).start()
    try:
        cabinet = AgentProcess(
            smartcity_env(mosquitto.url, influx, city), tmp_path, "sl-cabinet",
            "--driver", "modbus", "--driver-options", agent_options(server.port or 0),
        )  # fmt: skip
        agent.append(cabinet.start())
        wait_for_readings(influx, cabinet.device_id, 10)
        server.kill()  # a power cut in the cabinet
        cabinet.wait_log("reading not taken", count=3)
        server.start()
        before = seq_stats(influx, cabinet.device_id)[0]
        wait_for_readings(influx, cabinet.device_id, before + 10)
        health = wait_for_health(influx, cabinet.device_id)  # a heartbeat since the outage
        assert cabinet.stop() == 0
    finally:
        server.kill()
    # every reading the agent took is stored once, and each has the meter's values
    total = assert_every_reading_once(influx, cabinet)
    rows = influx.query(
        'SELECT count("voltage") FROM "streetlight" WHERE "device_id" = $d '
        'AND "voltage" = 230.20001 AND "activePower" = 1011.5 '
        'AND "totalActiveEnergyImport" = 12345.6 AND "current" = 4.5',
        d=cabinet.device_id,
    )
    assert rows[0]["count"] == total
    # the reads the outage cost are counted in health, with the reason
    assert health["readErrors"] >= 3
    # (connection lost, cannot open, or not connected until the back-off is over)
    assert "reading not taken: DriverError: " in health["lastError"]
    assert f"tcp 127.0.0.1:{server.port}" in health["lastError"]


def wait_for_health(influx: Influx, device_id: str) -> dict[str, object]:
    """The first stored heartbeat that counts the outage's failed reads (3 at least)."""
    deadline = time.monotonic() + 30
    while True:
        rows = influx.query(
            'SELECT "readErrors", "lastError" FROM "device_health" '
            'WHERE "device_id" = $d AND "readErrors" >= 3 LIMIT 1',
            d=device_id,
        )
        if rows:
            return rows[0]
        assert time.monotonic() < deadline, f"no heartbeat of {device_id} counts a failed read"
        time.sleep(0.1)


def test_a_dim_command_through_the_broker_writes_the_controllers_holding_register(
    mosquitto: Mosquitto, city: str, tmp_path: Path, agent: list[AgentProcess]
) -> None:
    server = ModbusServer(tmp_path / "modbus.log", port=free_port()).start()
    cabinet = AgentProcess(
        agent_env(mosquitto.url, city), tmp_path, "sl-cabinet-cmd",
        "--driver", "modbus", "--driver-options", agent_options(server.port or 0),
    )  # fmt: skip
    results = topic("streetlight", cabinet.device_id, "cmd_result", city)
    op = Operator(mosquitto)
    try:
        op.watch(results)
        agent.append(cabinet.start())
        cabinet.wait_log("connected to broker")
        cmd = topic("streetlight", cabinet.device_id, "cmd", city)
        op.send(cmd, b'{"v": 1, "id": "dim-1", "action": "dim", "level": 0.25}')
        op.send(cmd, b'{"v": 1, "id": "sched-1", "action": "schedule", "steps": []}')
        answers = op.wait_results(results, 2)
        assert cabinet.stop() == 0
        assert server.holding(CONTROLLER, 1) == 250
    finally:
        op.close()
        server.kill()
    by_id = {a["id"]: a for a in answers}
    assert by_id["dim-1"]["status"] == "accepted", answers
    assert by_id["sched-1"]["status"] == "rejected"
    assert "no unit on this port takes 'schedule'" in by_id["sched-1"]["reason"]


def cabinet_config(path: Path, mqtt_url: str, city: str, port: int) -> Path:
    path.write_text(f"""\
mqtt_url = "{mqtt_url}"
city = "{city}"

[edge]
device_type = "streetlight"
device_id = "sl-cabinet-check"
driver = "modbus"
zone = "Po"
outbox = "{path.parent / "check-outbox.sqlite"}"

[edge.driver_options]
transport = "tcp"
host = "127.0.0.1"
port = {port}
timeout = 0.5

[[edge.driver_options.units]]
slave_id = {METER}
model = "eastron-sdm630"

[[edge.driver_options.units]]
slave_id = {CONTROLLER}
model = "lighting-controller"
""")
    return path


def test_check_reads_each_mapped_register_and_shows_it_with_its_unit(
    mosquitto: Mosquitto, tcp_server: ModbusServer, city: str, tmp_path: Path
) -> None:
    out = check(cabinet_config(tmp_path / "agent.toml", mosquitto.url, city, tcp_server.port or 0))
    assert out.returncode == 0, out.stdout
    lines = out.stdout.splitlines()
    assert f"PASS  device    connected to tcp 127.0.0.1:{tcp_server.port}" in lines
    for shown in (
        "unit 1 (eastron-sdm630) input 42 (30043 Average line to neutral volts): "
        "voltage = 230.20001 V",
        "unit 1 (eastron-sdm630) input 48 (30049 Sum of line currents): current = 4.5 A",
        "unit 1 (eastron-sdm630) input 52 (30053 Total system power): activePower = 1011.5 W",
        "unit 1 (eastron-sdm630) input 72 (30073 Total import kWh): "
        "totalActiveEnergyImport = 12345.6 kWh",
        "unit 2 (lighting-controller) input 0 (30001 Lamp output: 0 off, 1 on, 2 on and dimmed "
        "by schedule): powerState = on",
        "unit 2 (lighting-controller) input 2 (30003 Rated lamp power, W): ratedPower = 100 W",
    ):
        assert f"PASS  device    {shown}" in lines, out.stdout
    assert "edge check PASSED" in out.stdout
    # nothing listens there: the device step fails with what to check
    nowhere = free_port()
    out = check(cabinet_config(tmp_path / "agent.toml", mosquitto.url, city, nowhere))
    assert out.returncode == 1
    assert f"FAIL  device    cannot open tcp 127.0.0.1:{nowhere}\n" in out.stdout
    assert "next: tcp: check host and port" in out.stdout
