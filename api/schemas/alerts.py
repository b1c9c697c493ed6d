"""Alerts: what operators must act on, raised from the latest data."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from api.schemas.common import Text

AlertKind = Literal[
    "lamp_failure",
    "bin_full",
    "bin_burning",
    "charger_faulted",
    "pm10_over_limit",
    "no2_over_limit",
    "o3_over_threshold",
    "station_faulted",
    "device_offline",
]
Severity = Literal["info", "warning", "critical"]


class AlertPublic(BaseModel):
    id: str = Field(description="Stable while the condition lasts: '<kind>:<device id>'.")
    kind: AlertKind
    severity: Severity
    device_id: str
    device_type: str
    zone: str
    observed_at: datetime | None = Field(
        description="Time of the reading that shows the condition (for device_offline: the "
        "device's last data, null if none in the look-back window)."
    )
    value: float | str | None = None
    message: Text
    detail: dict[str, Any] = Field(default_factory=dict)


class AlertsPublic(BaseModel):
    data: list[AlertPublic]
    count: int
    as_of: datetime
