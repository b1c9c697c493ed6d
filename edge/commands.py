"""Commands: validated against the contract, applied to the driver, answered with a result.

The agent subscribes to its own ``cmd`` topic only; a message that arrives on any other topic
(a stale subscription in an old session, a broker misconfiguration) is ignored, never applied.
Bad input is answered with the reason and never raised: publishing carries on regardless.
Decoding runs on the agent's thread; ``apply`` on the driver's (see ``edge.drivers.thread``).
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

from edge.drivers import CommandRejected, Driver
from smartcity.contract import MAX_PAYLOAD_BYTES, CommandResult, InvalidMessage, decode_command
from smartcity.devices.base import COMMAND_ID_PATTERN, Command

log = logging.getLogger("smartcity.edge")
_ID_RE = re.compile(COMMAND_ID_PATTERN)


class CommandHandler:
    def __init__(self, device_type: str, driver: Driver, cmd_topic: str) -> None:
        self.device_type = device_type
        self.driver = driver
        self.topic = cmd_topic
        self.accepted = 0
        self.rejected = 0

    def handle(self, topic: str, payload: bytes) -> CommandResult | None:
        """The result to send back, or None for a message that is not this device's command."""
        command = self.decode(topic, payload)
        return self.apply(command) if isinstance(command, Command) else command

    def decode(self, topic: str, payload: bytes | bytearray) -> Command | CommandResult | None:
        """The validated command; or its rejection; or None for a message that is not ours."""
        if topic != self.topic:
            log.warning("ignored a message on a topic that is not ours", extra={"topic": topic})
            return None
        try:
            return decode_command(self.device_type, payload)
        except InvalidMessage as exc:
            return self._rejected(_best_effort_id(payload), f"{exc.code}: {exc.reason}")

    def apply(self, command: Command) -> CommandResult:
        """Carry a validated command out on the driver (the agent calls it on the driver thread)."""
        try:
            self.driver.apply(command)
        except CommandRejected as exc:
            return self._rejected(command.id, exc.reason)
        except Exception as exc:  # the device failed, or a driver bug: the sender hears why
            log.exception("command failed in the driver", extra={"id": command.id})
            return self._rejected(command.id, f"the device failed: {type(exc).__name__}: {exc}")
        self.accepted += 1
        log.info(
            "command applied",
            extra={"id": command.id, "command": command.model_dump_json(exclude={"v", "id"})},
        )
        return CommandResult(v=1, ts=_now(), id=command.id, status="accepted")

    def _rejected(self, command_id: str | None, reason: str) -> CommandResult:
        self.rejected += 1
        log.warning("command rejected", extra={"id": command_id, "reason": reason})
        return CommandResult(v=1, ts=_now(), id=command_id, status="rejected", reason=reason[:512])


def _best_effort_id(payload: bytes | bytearray) -> str | None:
    """The ``id`` of a command that failed validation, if it had a usable one."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None
    try:
        value = json.loads(payload).get("id")
    except (ValueError, AttributeError, RecursionError):
        return None
    return value if isinstance(value, str) and _ID_RE.match(value) else None


def _now() -> datetime:
    return datetime.now(UTC)
