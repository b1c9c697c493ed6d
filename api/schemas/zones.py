"""Zone (quartiere) summaries and health."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class DeviceCounts(BaseModel):
    registered: int = Field(description="In the registry with this zone.")
    reporting: int = Field(description="Sent data within the offline limit.")
    offline: int = Field(description="Silent beyond the offline limit, or registered and silent.")


class ZoneHealth(BaseModel):
    reporting_share: float | None = Field(
        description="Reporting devices over reporting plus offline, in %."
    )
    unregistered_reporting: int = Field(description="Devices sending data but not registered.")
    edge_agents: int = Field(description="Edge agents that sent a heartbeat recently.")
    outbox_depth: int = Field(description="Readings waiting in edge agents' outboxes.")
    dropped: int = Field(description="Readings edge agents dropped (full outbox).")
    agents_with_errors: int


class ZoneSummary(BaseModel):
    zone: str
    lat: float
    lon: float
    devices: dict[str, DeviceCounts] = Field(description="By device type.")
    figures: dict[str, int] = Field(description="Counts such as lamps_on, bins_full.")
    alerts: dict[str, int] = Field(description="Open alerts by kind.")
    health: ZoneHealth


class ZonesPublic(BaseModel):
    data: list[ZoneSummary]
    as_of: datetime
