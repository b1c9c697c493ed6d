"""The OCPP gateway's pure parts: meter values to the contract's units, credentials, ids."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from edge.ocpp.central import basic_credentials, charge_point_id, command_result, ocpp_call
from edge.ocpp.meter import BadValue, parse_time, reading, sample_values
from smartcity import charger_auth
from smartcity.contract import decode_command


def test_units_are_converted_to_the_contracts() -> None:
    got = sample_values([
        {"value": "12345", "unit": "Wh", "measurand": "Energy.Active.Import.Register"},
        {"value": "7.4", "unit": "kW", "measurand": "Power.Active.Import"},
        {"value": "32", "unit": "A", "measurand": "Current.Import"},
        {"value": "231", "measurand": "Voltage"},
        {"value": "80", "unit": "Percent", "measurand": "SoC"},
        {"value": "50", "measurand": "Frequency"},  # not stored
    ])  # fmt: skip
    assert got == {"energy": 12.345, "power": 7.4, "current": 32.0, "voltage": 231.0, "soc": 80.0}
    # no measurand = the energy register, in Wh
    assert sample_values([{"value": "2000"}]) == {"energy": 2.0}


def test_phases_count_only_without_a_value_for_all_phases() -> None:
    phases = [
        {"value": v, "unit": "W", "measurand": "Power.Active.Import", "phase": p}
        for v, p in (("1000", "L1"), ("2000", "L2"), ("3000", "L3"))
    ] + [
        {"value": v, "measurand": "Current.Import", "phase": p}
        for v, p in (("10", "L1"), ("12", "L2"))
    ]
    assert sample_values(phases) == {"power": 6.0, "current": 12.0}
    whole = [*phases, {"value": "5000", "unit": "W", "measurand": "Power.Active.Import"}]
    assert sample_values(whole)["power"] == 5.0


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ({"value": "abc"}, "no number"),
        ({"value": "1", "unit": "kvarh"}, "kvarh"),
        ({"value": "nan"}, "finite"),
    ],
)
def test_a_bad_value_is_refused_with_the_reason(value: dict[str, str], said: str) -> None:
    with pytest.raises(BadValue, match=said):
        sample_values([value])


def test_signed_values_are_left_out() -> None:
    assert sample_values([{"value": "AbC=", "format": "SignedData"}]) == {}


def test_times_without_an_offset_are_utc() -> None:
    assert parse_time("2026-01-15T10:00:00") == datetime(2026, 1, 15, 10, tzinfo=UTC)
    with pytest.raises(BadValue):
        parse_time("yesterday")


def test_station_values_are_the_connectors_sums_unless_metered_themselves() -> None:
    connectors = {
        1: {"status": "Charging", "power": 7.0, "energy": 100.0},
        2: {"status": "Available", "power": 0.0, "energy": 50.0},
    }
    got = reading(connectors, {})
    assert (got["power"], got["energy"]) == (7.0, 150.0)
    assert reading(connectors, {"energy": 1000.0})["energy"] == 1000.0


def test_passwords_are_salted_and_checked() -> None:
    password = charger_auth.new_password()
    one, two = charger_auth.hash_password(password), charger_auth.hash_password(password)
    assert one != two
    assert password not in one
    assert charger_auth.verify_password(password, one)
    assert not charger_auth.verify_password(password + "x", one)
    assert not charger_auth.verify_password(password, "garbage")
    key = b"k" * 32
    assert charger_auth.id_tag_hash("CARD1", key) == charger_auth.id_tag_hash("CARD1", key)
    assert charger_auth.id_tag_hash("CARD1", key) != charger_auth.id_tag_hash("CARD1", b"x" * 32)


def test_the_handshake_reads_the_id_and_basic_credentials() -> None:
    assert charge_point_id("/ocpp/ev-00001") == "ev-00001"
    assert charge_point_id("/ocpp/ev%2D1") == "ev-1"
    assert charge_point_id("/ocpp/a/b") is None
    assert charge_point_id("/other/ev-1") is None
    token = base64.b64encode(b"ev-1:s3cr:et").decode()
    assert basic_credentials(f"Basic {token}") == ("ev-1", "s3cr:et")
    assert basic_credentials("Basic !!!") is None
    assert basic_credentials(None) is None


def test_commands_map_to_ocpp_calls_and_answers_to_results() -> None:
    reset = decode_command("evcharger", b'{"v":1,"id":"c1","action":"reset","type":"Hard"}')
    assert type(ocpp_call(reset)).__name__ == "Reset"

    class Answer:
        def __init__(self, status: str) -> None:
            self.status = status

    assert command_result(reset, Answer("Accepted")).status == "accepted"
    assert command_result(reset, Answer("Rejected")).reason == "the charger answered Rejected"
    late = command_result(reset, Answer("Scheduled"))
    assert (late.status, late.reason) == ("accepted", "Scheduled")
