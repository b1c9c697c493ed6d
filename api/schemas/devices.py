"""The device registry's models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import (
    DeviceId,
    DeviceTypeName,
    IsoDate,
    Latitude,
    Longitude,
    PlainText,
    ZoneName,
)

DeviceName = Annotated[PlainText, Field(max_length=200, description="e.g. the street and number.")]


class DeviceBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_type: DeviceTypeName
    zone: ZoneName = Field(description="The quartiere the device stands in.")
    lat: Latitude
    lon: Longitude
    name: DeviceName | None = None
    installed_on: IsoDate | None = None


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


class DevicePublic(DeviceBase):
    model_config = ConfigDict(from_attributes=True)

    device_id: DeviceId
    created_at: datetime
    updated_at: datetime


class DevicesPublic(BaseModel):
    data: list[DevicePublic]
    count: int = Field(description="Devices matching the filters (all pages).")
