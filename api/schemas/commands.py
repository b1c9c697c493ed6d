"""Commands to devices and their states."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from smartcity.commands import CommandState


class CommandRequest(BaseModel):
    """A command by name, with its arguments as the device type's command tables list them
    (docs/protocol.md); the platform adds ``v``, ``id`` and ``action``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "dim", "args": {"level": 0.4}}]},
    )

    name: str = Field(max_length=64, description="e.g. dim, switch, setConnector, setInterval.")
    args: dict[str, Any] = Field(default_factory=dict, description='e.g. {"level": 0.4}.')


class CommandOut(BaseModel):
    """One command and what became of it."""

    command_id: str
    device_id: str
    name: str
    args: dict[str, Any]
    actor: str = Field(description="key:<key id> or cli:<user>.")
    sent_at: datetime
    state: Literal["sent", "applied", "rejected", "expired"] = Field(
        description="sent: published, no answer yet; applied or rejected: the device's answer; "
        "expired: no answer within the API's --command-timeout."
    )
    answered_at: datetime | None = None
    reason: str | None = Field(None, description="Why the device rejected it.")

    @classmethod
    def of(cls, device_id: str, state: CommandState) -> CommandOut:
        return cls(
            command_id=state.command_id,
            device_id=device_id,
            name=state.name,
            args=state.args,
            actor=state.actor,
            sent_at=state.sent_at,
            state=state.state,
            answered_at=state.answered_at,
            reason=state.reason,
        )


class CommandsOut(BaseModel):
    data: list[CommandOut]
    count: int
