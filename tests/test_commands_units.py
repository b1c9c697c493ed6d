"""The core's command helpers: building from a name and arguments, and reading states back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from smartcity import commands
from smartcity.commands import CommandError

T0 = datetime(2026, 1, 15, 21, 0, tzinfo=UTC)


def sent(command_id: str, at: datetime) -> tuple[str, datetime, dict[str, object]]:
    values = {"command_id": command_id, "name": "dim", "args": '{"level": 0.4}', "actor": "cli:x"}
    return "sent", at, values


def test_each_command_has_one_state_from_its_answer_or_its_age() -> None:
    rows = [
        sent("answered", T0),
        ("applied", T0 + timedelta(seconds=1), {"command_id": "answered"}),
        sent("late", T0),
        # answered after the timeout: the answer still counts
        ("rejected", T0 + timedelta(seconds=300), {"command_id": "late", "reason": "no"}),
        sent("silent", T0),
        sent("fresh", T0 + timedelta(seconds=100)),
        # an answer to a command sent before the window, or by no one: left out
        ("applied", T0, {"command_id": "unknown"}),
    ]
    found = commands.states(rows, now=T0 + timedelta(seconds=130), timeout_s=120)
    by_id = {c.command_id: c for c in found}
    assert set(by_id) == {"answered", "late", "silent", "fresh"}
    assert by_id["answered"].state == "applied"
    assert by_id["late"].state == "rejected"
    assert by_id["late"].reason == "no"
    assert by_id["silent"].state == "expired"
    assert by_id["fresh"].state == "sent"
    assert by_id["fresh"].args == {"level": 0.4}
    assert found[0].command_id == "fresh"  # newest first


def test_cli_words_become_typed_arguments() -> None:
    args = commands.parse_args(["level=0.4", "state=on", "enabled=false", 'steps=[{"a": 1}]'])
    assert args == {"level": 0.4, "state": "on", "enabled": False, "steps": [{"a": 1}]}
    with pytest.raises(CommandError, match="not key=value"):
        commands.parse_args(["level"])


@pytest.mark.parametrize(
    ("device_type", "name", "args", "said"),
    [
        ("streetlight", "setInterval", {"interval": 60.0}, "has no command 'setInterval'"),
        ("streetlight", "dim", {"level": True}, "level"),
        ("evcharger", "setConnector", {"connectorId": 9, "enabled": False}, "connectorId"),
        ("wastebin", "setInterval", {"interval": 60.0, "action": "dim"}, "set by the platform"),
    ],
)
def test_a_bad_command_is_refused_with_the_argument_named(
    device_type: str, name: str, args: dict[str, object], said: str
) -> None:
    with pytest.raises(CommandError, match=said):
        commands.build(device_type, name, args, "op-1")


def test_every_device_type_lists_its_commands() -> None:
    assert set(commands.command_names("streetlight")) == {"switch", "dim", "schedule"}
    # the OCPP central system's (docs/ocpp.md); a simulated charger carries out setConnector only
    assert set(commands.command_names("evcharger")) == {
        "setConnector", "remoteStart", "remoteStop", "reset", "unlockConnector",
        "triggerMessage", "changeConfiguration", "getConfiguration",
    }  # fmt: skip
    assert set(commands.command_names("wastebin")) == {"setInterval"}
