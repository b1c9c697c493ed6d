"""A device's latest reading and its time series."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

Aggregation = Literal["mean", "max", "min", "last"]


class ConnectorPublic(BaseModel):
    connector_id: str
    time: datetime
    status: str | None
    power: float | None
    energy: float | None


class LatestPublic(BaseModel):
    device_id: str
    device_type: str
    zone: str
    registered: bool
    time: datetime = Field(description="When the device took the reading.")
    fields: dict[str, float | int | str | bool | None]
    units: dict[str, str] = Field(description="Unit of each numeric field (UCUM-like).")
    connectors: list[ConnectorPublic] | None = Field(
        None, description="EV charging stations: each connector's latest state."
    )


class Point(BaseModel):
    time: datetime
    value: float


class SeriesPublic(BaseModel):
    device_id: str
    device_type: str
    field: str
    unit: str | None
    agg: Aggregation
    interval: str
    start: datetime
    end: datetime
    resolution: Literal["raw", "hourly", "daily"] = Field(
        description="Where the points came from, chosen from the range and interval: raw "
        "readings, or hourly or daily rollups (ranges of 2 days and 60 days on, when the "
        "interval is whole hours or days), with raw readings after the newest rollup."
    )
    points: list[Point]
