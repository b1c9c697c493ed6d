"""The audit trail's models: entries are only ever read through the API, never written."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class AuditEntryPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="Increasing with each entry.")
    at: datetime = Field(description="When it happened (UTC).")
    actor: str = Field(description="key:<key id> for an API key, cli:<OS user> for a command.")
    action: str = Field(description="e.g. device.create, device.update, key.create, key.revoke.")
    device_id: str | None = Field(description="The device acted on, if any.")
    outcome: str = Field(description="ok, or refused: / failed: and why.")
    detail: str = Field(description="What changed, as short JSON; never a secret.")


class AuditPublic(BaseModel):
    data: list[AuditEntryPublic] = Field(description="Newest first.")
    count: int = Field(description="Entries matching the filters (all pages).")
