"""The device registry's models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import (
    DeviceId,
    DeviceTypeName,
    FillLevel,
    IsoDate,
    Latitude,
    Longitude,
    PlainText,
    ZoneName,
)

DeviceName = Annotated[PlainText, Field(max_length=200, description="e.g. the street and number.")]
Threshold = Annotated[
    FillLevel,
    Field(
        description="Bins only: the fill level (0-1) at which this bin is full, for its alert and "
        "the bins_full KPI; unset (or null in a PATCH) = the API's --bin-threshold."
    ),
]


class DeviceBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_type: DeviceTypeName
    zone: ZoneName = Field(description="The quartiere the device stands in.")
    lat: Latitude
    lon: Longitude
    name: DeviceName | None = None
    installed_on: IsoDate | None = None
    threshold: Threshold | None = None


class DeviceCreate(DeviceBase):
    device_id: DeviceId


class DeviceUpdate(BaseModel):
    """Fields to change; the others keep their value."""

    model_config = ConfigDict(extra="forbid")

    device_type: DeviceTypeName | None = None
    zone: ZoneName | None = None
    lat: Latitude | None = None
    lon: Longitude | None = None
    name: DeviceName | None = None
    installed_on: IsoDate | None = None
    threshold: Threshold | None = None


class DevicePublic(DeviceBase):
    model_config = ConfigDict(from_attributes=True)

    device_id: DeviceId
    created_at: datetime
    updated_at: datetime
    revoked_at: datetime | None = Field(
        None, description="When its broker credentials were revoked; null = not revoked."
    )


class DevicesPublic(BaseModel):
    data: list[DevicePublic]
    count: int = Field(description="Devices matching the filters (all pages).")
