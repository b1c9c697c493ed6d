"""API keys' models: the secret is shown once, at creation, and never stored."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import PlainText

Scope = Literal["read", "operate", "write", "admin"]


class KeyBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: PlainText = Field(min_length=1, max_length=100, description="Who or what uses the key.")
    scope: Scope


class KeyCreate(KeyBase):
    pass


class KeyPublic(KeyBase):
    model_config = ConfigDict(from_attributes=True)

    key_id: str
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = Field(
        None, description="When the key last authenticated (to within a minute); null if never."
    )


class KeyCreated(KeyPublic):
    key: str = Field(description="The key itself: shown this once, store it now.")
