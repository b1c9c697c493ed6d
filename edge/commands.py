"""Commands: validated against the contract, applied to the driver, answered with a result.

The agent subscribes to its own ``cmd`` topic only; a message that arrives on any other topic
(a stale subscription in an old session, a broker misconfiguration) is ignored, never applied.
Bad input is answered with the reason and never raised: publishing carries on regardless.
Decoding runs on the agent's thread; ``apply`` on the driver's (see ``edge.drivers.thread``).
"""

from __future__ import annotations

import logging

from edge.drivers import Driver
from smartcity import commands
from smartcity.commands import CommandRejected
from smartcity.contract import CommandResult
from smartcity.devices.base import Command

log = logging.getLogger("smartcity.edge")


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
        decoded = commands.decode(self.device_type, payload)
        if isinstance(decoded, CommandResult):  # refused by the contract: counted and logged
            return self._rejected(decoded.id, decoded.reason or "")
        return decoded

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
        return commands.accepted(command.id)

    def _rejected(self, command_id: str | None, reason: str) -> CommandResult:
        self.rejected += 1
        log.warning("command rejected", extra={"id": command_id, "reason": reason})
        return commands.rejected(command_id, reason)
