"""LoRaWAN profiles against the vendors' own examples; the bridge's translation without a broker.

The expected values are written here from the vendor documents cited in each profile, not read
from the profile under test.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from edge.lorawan.bridge import Bridge, Known
from edge.lorawan.state import State
from smartcity import lorawan_profiles, provisioning
from smartcity.contract import DEADLETTER_TOPIC, decode
from smartcity.lorawan_profiles import ProfileError

EM400 = lorawan_profiles.load("milesight-em400-udl")
LDDS75 = lorawan_profiles.load("dragino-ldds75")


def em400_fill(distance_mm: float) -> float:
    """The profile's bin: 2500 mm from sensor to bottom = empty, 300 mm = full."""
    return min(1.0, max(0.0, (2500 - distance_mm) / 2200))


def test_em400_udl_readme_example() -> None:
    # Milesight SensorDecoders EM400-UDL README: 01755C 03670101 04824408 050001
    # -> battery 92 %, temperature 25.7 °C, distance 2116 mm, position tilt
    raw = EM400.raw_values(85, bytes.fromhex("01755C0367010104824408050001"))
    assert raw == {"battery": 92, "temperature": 25.7, "distance": 2116, "position": "tilt"}
    fields = EM400.contract_fields(raw)
    assert fields["batteryLevel"] == pytest.approx(0.92)
    assert fields["temperature"] == pytest.approx(25.7)
    assert fields["fillingLevel"] == pytest.approx(em400_fill(2116))
    assert fields["status"] == "lidOpen"


def test_em400_vendor_manual_example() -> None:
    # milesight.com EM400 uplink page: 017564 0367f800 04820101 050000
    # -> 100 %, f8 00 = 248 / 10 = 24.8 °C, 01 01 = 257 mm, 00 = normal
    raw = EM400.raw_values(85, bytes.fromhex("0175640367f80004820101050000"))
    assert raw == {"battery": 100, "temperature": 24.8, "distance": 257, "position": "normal"}
    fields = EM400.contract_fields(raw)
    assert fields["fillingLevel"] == 1.0  # 257 mm is above the full mark: clamped
    assert fields["status"] == "ok"


def test_em400_refusals() -> None:
    with pytest.raises(ProfileError) as out_of_range:  # fffd: out of measuring range
        EM400.raw_values(85, bytes.fromhex("0175640482fdff"))
    assert out_of_range.value.code == "out_of_range"
    with pytest.raises(ProfileError) as port:
        EM400.raw_values(10, bytes.fromhex("017564"))
    assert port.value.code == "unknown_fport"
    with pytest.raises(ProfileError) as cut:
        EM400.raw_values(85, bytes.fromhex("01756403"))
    assert cut.value.code == "wrong_length"
    with pytest.raises(ProfileError) as unknown:
        EM400.raw_values(85, bytes.fromhex("0999aa"))
    assert unknown.value.code == "undecodable"
    with pytest.raises(ProfileError) as incomplete:  # an alarm-only frame lacks the battery
        EM400.contract_fields(EM400.raw_values(85, bytes.fromhex("017564")))
    assert incomplete.value.code == "incomplete"
    # the device-information frame sent at join: no reading, not an error
    assert EM400.raw_values(85, bytes.fromhex("ff0bffff0101")) == {}


def test_em400_downlink_is_the_vendors() -> None:
    # EM400-UDL downlink page: ff03b004 = report interval 04b0 = 1200 s, fPort 85
    assert EM400.encode_downlink("setInterval", {"interval": 1200.0}) == (
        85,
        bytes.fromhex("ff03b004"),
    )


def test_ldds75_manual_fields() -> None:
    # LDDS75 manual / Dragino decoder: BAT 0x0B45 = 2885 mV; distance big-endian mm;
    # DS18B20 0x0105 = 26.1 °C and 0xFF3F = -19.3 °C; 8 bytes on fPort 2
    raw = LDDS75.raw_values(2, bytes.fromhex("0B450B0500010501"))
    assert raw["battery"] == 2885
    assert raw["distance"] == 0x0B05
    assert raw["temperature"] == pytest.approx(26.1)
    cold = LDDS75.raw_values(2, bytes.fromhex("0B450B0500FF3F01"))
    assert cold["temperature"] == pytest.approx(-19.3)
    interrupt = LDDS75.raw_values(2, bytes.fromhex("8B450B0500010501"))  # bit 15: interrupt
    assert interrupt["battery"] == 2885
    with pytest.raises(ProfileError) as short:
        LDDS75.raw_values(2, bytes.fromhex("0B450B05000105"))
    assert short.value.code == "wrong_length"
    # TDC downlink: 0x01 + 3 bytes of seconds, e.g. 01 00 00 1E = 30 s
    assert LDDS75.encode_downlink("setInterval", {"interval": 30.0})[1] == bytes.fromhex("0100001e")


@pytest.mark.parametrize("name", lorawan_profiles.names())
def test_profiles_round_trip(name: str) -> None:
    """What the simulator encodes the bridge decodes to the same contract values."""
    profile = lorawan_profiles.load(name)
    wanted = {"fillingLevel": 0.5, "temperature": 21.5, "batteryLevel": 0.75}
    fport, data = profile.encode_uplink({**wanted, "status": "ok", "storedWasteKind": "residual"})
    got = profile.contract_fields(profile.raw_values(fport, data))
    for key, value in wanted.items():
        assert got[key] == pytest.approx(value, abs=0.01)


EUI = "24e124128c000001"
DEVICE = Known("wb-lora-1", "wastebin", "Centro", EUI, "milesight-em400-udl")


def uplink(fcnt: int, time: str, data: bytes, dedup: str = "d-1") -> bytes:
    return json.dumps(
        {
            "deduplicationId": dedup,
            "time": time,
            "deviceInfo": {"devEui": EUI, "applicationId": "app-1"},
            "fCnt": fcnt,
            "fPort": 85,
            "data": base64.b64encode(data).decode(),
            "rxInfo": [
                {"gatewayId": "0016c001ff10a235", "rssi": -97, "snr": 7.5},
                {"gatewayId": "0016c001ff10a236", "rssi": -110, "snr": -3.0},
            ],
            "txInfo": {"modulation": {"lora": {"spreadingFactor": 9, "bandwidth": 125000}}},
        }
    ).encode()


@pytest.fixture
def bridge(tmp_path: Path) -> Bridge:
    devices = {DEVICE.dev_eui: DEVICE}
    return Bridge(
        State(tmp_path / "state.db"),
        devices.get,
        {DEVICE.device_id: DEVICE}.get,
        "cremona",
    )


UP = f"application/app-1/device/{EUI}/event/up"
EXAMPLE = bytes.fromhex("01755C0367010104824408050001")


def test_bridge_uplink_and_seq_across_joins(bridge: Bridge) -> None:
    out = bridge.handle(UP, uplink(5, "2026-01-15T10:00:00.123456789+00:00", EXAMPLE))
    telemetry = decode(out[0].topic, out[0].payload)
    reading = telemetry.body.readings[0]  # type: ignore[union-attr]
    assert (reading.seq, reading.temperature, reading.batteryLevel) == (5, 25.7, 0.92)
    health = decode(out[1].topic, out[1].payload).body
    assert (health.rssi, health.snr, health.gatewayId, health.spreadingFactor) == (  # type: ignore[union-attr]
        -97.0, 7.5, "0016c001ff10a235", 9,
    )  # fmt: skip
    join = json.dumps({"time": "2026-01-15T11:00:00+00:00", "deviceInfo": {"devEui": EUI}})
    bridge.handle(f"application/app-1/device/{EUI}/event/join", join.encode())
    after = bridge.handle(UP, uplink(5, "2026-01-15T11:05:00+00:00", EXAMPLE, "d-2"))
    assert decode(after[0].topic, after[0].payload).body.readings[0].seq == 2**32 + 5  # type: ignore[union-attr]
    # the first uplink redelivered after the join keeps its seq: same point
    again = bridge.handle(UP, uplink(5, "2026-01-15T10:00:00.123456789+00:00", EXAMPLE))
    assert again[0].payload == out[0].payload


@pytest.mark.parametrize(
    ("name", "payload", "code"),
    [
        (UP, b"{not json", "bad_json"),
        ("application/app-1/device/x/event/nope", b"{}", "bad_topic"),
        (UP.replace(EUI, "0000000000000000"), uplink(1, "2026-01-15T10:00:00Z", EXAMPLE), None),
        (UP, uplink(1, "2026-01-15T10:00:00Z", bytes.fromhex("0175")), "wrong_length"),
        (UP, uplink(1, "2026-01-15T10:00:00Z", bytes.fromhex("04820000")), "incomplete"),
        (UP, uplink(1, "2026-01-15T10:00:00Z", bytes.fromhex("abcdef")), "undecodable"),
    ],
)
def test_bridge_dead_letters(bridge: Bridge, name: str, payload: bytes, code: str | None) -> None:
    if code is None:  # an unknown DevEUI (the body says the same EUI as the topic)
        payload = payload.replace(EUI.encode(), b"0000000000000000")
        code = "unknown_dev_eui"
    (out,) = bridge.handle(name, payload)
    assert out.topic == DEADLETTER_TOPIC
    letter = json.loads(out.payload)
    assert letter["code"] == code
    assert letter["reason"]
    assert bridge.counts[f"deadletter:{code}"] == 1


def test_bridge_command_to_downlink_and_ack(bridge: Bridge) -> None:
    bridge.handle(UP, uplink(1, "2026-01-15T10:00:00Z", EXAMPLE))  # learns the application
    cmd = b'{"v": 1, "id": "op-1", "action": "setInterval", "interval": 1200}'
    (down,) = bridge.handle("smartcity/v1/cremona/wastebin/wb-lora-1/cmd", cmd)
    assert down.topic == f"application/app-1/device/{EUI}/command/down"
    body = json.loads(down.payload)
    assert (body["fPort"], base64.b64decode(body["data"]).hex()) == (85, "ff03b004")
    ack = {"time": "2026-01-15T10:01:00Z", "deviceInfo": {"devEui": EUI}, "acknowledged": True}
    ack["queueItemId"] = body["id"]
    (result,) = bridge.handle(f"application/app-1/device/{EUI}/event/ack", json.dumps(ack).encode())
    got = decode(result.topic, result.payload).body
    assert (got.id, got.status) == ("op-1", "accepted")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("dev_eui", "profile", "kind", "says"),
    [
        ("24e124128c00a001", None, "wastebin", "both a DevEUI and a profile"),
        (None, "milesight-em400-udl", "wastebin", "both a DevEUI and a profile"),
        ("24e1", "milesight-em400-udl", "wastebin", "16 lower-case hex"),
        ("24e124128c00a001", "no-such-model", "wastebin", "no LoRaWAN profile"),
        ("24e124128c00a001", "milesight-em400-udl", "streetlight", "for wastebin devices"),
    ],
)
def test_provisioning_refuses_a_bad_lorawan_device(
    dev_eui: str | None, profile: str | None, kind: str, says: str
) -> None:
    new = provisioning.NewDevice(
        kind, "dev-1", "Centro", 45.13, 10.02, dev_eui=dev_eui, lorawan_profile=profile
    )
    with pytest.raises(provisioning.InvalidDevice, match=says):
        new.check("cremona")
