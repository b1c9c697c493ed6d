"""Commands to devices: what everyone who sends, answers or stores one shares.

The API and ``smartcity command`` build a command from a name and arguments and validate it
against the device type's command models before anything is published (:func:`build`); edge
agents and the simulated fleet answer one with a :class:`~smartcity.contract.CommandResult`
(:func:`answer`); the sender writes a ``sent`` point and the ingester a point per result in one
measurement (:func:`sent_line`, :func:`result_line`); the API reads them back into one state
per command (:func:`states`), ``expired`` being computed when read.
"""

from __future__ import annotations

import json
import re
import secrets
import typing
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import ValidationError

from smartcity.contract import (
    MAX_PAYLOAD_BYTES,
    CommandResult,
    InvalidMessage,
    command_adapter,
    decode_command,
    describe,
)
from smartcity.devices import DEVICE_TYPES
from smartcity.devices.base import COMMAND_ID_PATTERN, Command, point_time_ns
from smartcity.lineprotocol import line
from smartcity.storage import COMMAND_MEASUREMENT, COMMAND_STATE_TAG

_ID_RE = re.compile(COMMAND_ID_PATTERN)
#: Keys a command's envelope sets itself; an argument may not name them.
RESERVED = ("v", "id", "action")
State = Literal["sent", "applied", "rejected", "expired"]


class CommandRejected(Exception):
    """A valid command this device cannot carry out; ``reason`` goes back to the sender."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CommandError(ValueError):
    """A command refused before it is sent: unknown name or bad arguments.

    ``errors`` name each bad argument (``loc``, ``msg``, ``type``), as the API's 422s do.
    """

    def __init__(self, reason: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.errors = errors


def command_names(device_type: str) -> dict[str, type[Command]]:
    """The commands ``device_type`` accepts, by action name."""
    model: Any = DEVICE_TYPES[device_type].command_model
    union = typing.get_args(model)[0] if typing.get_origin(model) is typing.Annotated else model
    classes = typing.get_args(union) or (union,)
    names: dict[str, type[Command]] = {}
    for cls in classes:
        (action,) = typing.get_args(cls.model_fields["action"].annotation)
        names[action] = cls
    return names


def new_command_id(now: datetime | None = None) -> str:
    """A fresh id, readable and unique: ``op-20260115T210405-3f9a1c``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
    return f"op-{stamp}-{secrets.token_hex(3)}"


def build(device_type: str, name: str, args: Mapping[str, object], command_id: str) -> Command:
    """The validated command, or :class:`CommandError` saying which name or argument is bad."""
    known = command_names(device_type)
    if name not in known:
        raise CommandError(
            f"a {device_type} has no command {name!r}; its commands: {', '.join(known)}",
            [{"loc": ["body", "name"], "msg": "unknown command", "type": "unknown_command"}],
        )
    reserved = [k for k in args if k in RESERVED]
    if reserved:
        raise CommandError(
            f"arguments {reserved} are set by the platform, not given",
            [{"loc": ["body", "args", k], "msg": "reserved", "type": "reserved"} for k in reserved],
        )
    payload = {**args, "v": 1, "id": command_id, "action": name}
    try:
        command: Command = command_adapter(device_type).validate_python(payload)
    except ValidationError as exc:
        errors = [
            {
                "loc": ["body", "args", *(str(p) for p in e["loc"][1:])],
                "msg": e["msg"],
                "type": e["type"],
            }
            for e in exc.errors(include_url=False)[:20]
        ]
        raise CommandError(f"invalid arguments for {name}: {describe(exc)}", errors) from None
    return command


def parse_args(pairs: Iterable[str]) -> dict[str, object]:
    """``key=value`` words (the CLI's) as arguments: a value is JSON if it parses as JSON
    (``0.4``, ``false``, ``[...]``), else the text itself (``state=on``)."""
    args: dict[str, object] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise CommandError(
                f"argument {pair!r} is not key=value (e.g. level=0.4)",
                [{"loc": ["args", pair], "msg": "not key=value", "type": "syntax"}],
            )
        try:
            args[key] = json.loads(text)
        except ValueError:
            args[key] = text
    return args


def arguments(command: Command) -> dict[str, Any]:
    """A command's own arguments, without its envelope."""
    return command.model_dump(mode="json", exclude=set(RESERVED))


# -- answering (edge agents, the simulated fleet) ------------------------------------------------


def accepted(command_id: str) -> CommandResult:
    return CommandResult(v=1, ts=datetime.now(UTC), id=command_id, status="accepted")


def rejected(command_id: str | None, reason: str) -> CommandResult:
    return CommandResult(
        v=1, ts=datetime.now(UTC), id=command_id, status="rejected", reason=reason[:512]
    )


def decode(device_type: str, payload: bytes | bytearray) -> Command | CommandResult:
    """The validated command, or the rejection to send back (never raises on bad input)."""
    try:
        return decode_command(device_type, payload)
    except InvalidMessage as exc:
        return rejected(best_effort_id(payload), f"{exc.code}: {exc.reason}")


def answer(
    device_type: str, payload: bytes | bytearray, apply: Callable[[Command], None]
) -> CommandResult:
    """Decode, apply and answer one command in one go (a device with no thread of its own)."""
    command = decode(device_type, payload)
    if isinstance(command, CommandResult):
        return command
    try:
        apply(command)
    except CommandRejected as exc:
        return rejected(command.id, exc.reason)
    return accepted(command.id)


def best_effort_id(payload: bytes | bytearray) -> str | None:
    """The ``id`` of a command that failed validation, if it had a usable one."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None
    try:
        value = json.loads(payload).get("id")
    except (ValueError, AttributeError, RecursionError):
        return None
    return value if isinstance(value, str) and _ID_RE.match(value) else None


# -- storing and reading back ---------------------------------------------------------------------


def _tags(device_type: str, device_id: str, zone: str, state: str) -> dict[str, str]:
    return {
        "device_id": device_id,
        "device_type": device_type,
        COMMAND_STATE_TAG: state,
        "zone": zone,
    }


def sent_line(
    device_type: str, device_id: str, zone: str, command: Command, actor: str, now_ns: int
) -> str:
    """The ``sent`` point of a command just published (the sender writes it)."""
    fields = {
        "command_id": command.id,
        "name": getattr(command, "action", ""),
        "args": json.dumps(arguments(command), sort_keys=True),
        "actor": actor,
    }
    return line(COMMAND_MEASUREMENT, _tags(device_type, device_id, zone, "sent"), fields, now_ns)


def result_line(device_type: str, device_id: str, zone: str, result: CommandResult) -> str:
    """A device's answer as a point (the ingester writes it); state ``applied`` or ``rejected``.

    Stamped with the device's time plus the id's CRC in nanoseconds, so a result delivered
    twice lands on the same point and two answered in one millisecond stay two."""
    state = "applied" if result.status == "accepted" else "rejected"
    fields: dict[str, str] = {"command_id": result.id or ""}
    if result.reason is not None:
        fields["reason"] = result.reason
    stamp = point_time_ns(result.ts, zlib.crc32((result.id or "").encode()))
    return line(COMMAND_MEASUREMENT, _tags(device_type, device_id, zone, state), fields, stamp)


@dataclass(frozen=True, slots=True)
class CommandState:
    """One command as the platform last knows it."""

    command_id: str
    name: str
    args: dict[str, Any]
    actor: str
    sent_at: datetime
    state: State
    answered_at: datetime | None = None
    reason: str | None = None


def states(
    rows: Iterable[tuple[str, datetime, Mapping[str, Any]]], now: datetime, timeout_s: float
) -> list[CommandState]:
    """Each sent command's state, newest first, from ``(state tag, time, fields)`` rows.

    A result wins whenever it came; a command with none is ``sent`` until ``timeout_s`` has
    passed since it was sent, then ``expired``. Results whose id matches no sent command (sent
    before the window, or by someone else) are left out.
    """
    sent: dict[str, tuple[datetime, Mapping[str, Any]]] = {}
    answers: dict[str, tuple[str, datetime, Mapping[str, Any]]] = {}
    for state, at, values in rows:
        command_id = str(values.get("command_id") or "")
        if state == "sent":
            sent[command_id] = (at, values)
        elif command_id and (command_id not in answers or answers[command_id][1] < at):
            answers[command_id] = (state, at, values)
    out = []
    for command_id, (at, values) in sent.items():
        try:
            args = json.loads(values.get("args") or "{}")
        except ValueError:
            args = {}
        base = {
            "command_id": command_id,
            "name": str(values.get("name") or ""),
            "args": args,
            "actor": str(values.get("actor") or ""),
            "sent_at": at,
        }
        if command_id in answers:
            state, answered, result = answers[command_id]
            reason = result.get("reason")
            out.append(
                CommandState(
                    **base,
                    state="applied" if state == "applied" else "rejected",
                    answered_at=answered,
                    reason=str(reason) if reason is not None else None,
                )
            )
        else:
            late = now - at > timedelta(seconds=timeout_s)
            out.append(CommandState(**base, state="expired" if late else "sent"))
    out.sort(key=lambda c: c.sent_at, reverse=True)
    return out
