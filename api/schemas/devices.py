"""The device registry's models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

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
from smartcity import lorawan_profiles

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


DevEui = Annotated[
    str,
    BeforeValidator(lambda v: v.lower() if isinstance(v, str) else v),
    Field(
        pattern=r"^[0-9a-f]{16}$",
        description="LoRaWAN sensors: the DevEUI (16 hex digits, kept in lower case), by which the "
        "ChirpStack bridge finds the device (docs/lorawan.md).",
    ),
]
LorawanProfile = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9][a-z0-9-]{0,63}$",
        description="LoRaWAN sensors: the sensor model's profile, e.g. milesight-em400-udl.",
    ),
]


class DeviceCreate(DeviceBase):
    device_id: DeviceId
    dev_eui: DevEui | None = None
    lorawan_profile: LorawanProfile | None = None

    @model_validator(mode="after")
    def _lorawan(self) -> DeviceCreate:
        if (self.dev_eui is None) != (self.lorawan_profile is None):
            raise ValueError("a LoRaWAN device needs both dev_eui and lorawan_profile")
        if self.lorawan_profile is not None:
            try:
                profile = lorawan_profiles.load(self.lorawan_profile)
            except KeyError as exc:
                raise ValueError(str(exc.args[0])) from None
            if profile.device_type != self.device_type:
                raise ValueError(
                    f"profile {self.lorawan_profile} is for {profile.device_type} devices"
                )
        return self


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
    dev_eui: DevEui | None = None
    lorawan_profile: LorawanProfile | None = None


class DevicesPublic(BaseModel):
    data: list[DevicePublic]
    count: int = Field(description="Devices matching the filters (all pages).")
