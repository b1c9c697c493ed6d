"""Registry reads and writes; the routers stay free of SQL."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVarTuple

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from api.schemas.devices import DeviceCreate, DeviceUpdate
from smartcity.registry.models import ApiKey, Device

#: The columns a query selects: the filter narrows the rows, whatever the columns.
Columns = TypeVarTuple("Columns")


@dataclass(frozen=True, slots=True)
class DeviceFilter:
    device_type: str | None = None
    zone: str | None = None
    #: (min lon, min lat, max lon, max lat), the GeoJSON order
    bbox: tuple[float, float, float, float] | None = None

    def apply(self, query: Select[*Columns]) -> Select[*Columns]:
        if self.device_type:
            query = query.where(Device.device_type == self.device_type)
        if self.zone:
            query = query.where(Device.zone == self.zone)
        if self.bbox:
            west, south, east, north = self.bbox
            query = query.where(
                Device.lon >= west, Device.lon <= east, Device.lat >= south, Device.lat <= north
            )
        return query


def list_devices(
    session: Session, where: DeviceFilter, limit: int, offset: int
) -> tuple[list[Device], int]:
    total = session.scalar(where.apply(select(func.count()).select_from(Device)))
    rows = session.scalars(
        where.apply(select(Device)).order_by(Device.device_id).limit(limit).offset(offset)
    ).all()
    return list(rows), int(total or 0)


def all_devices(session: Session) -> list[Device]:
    return list(session.scalars(select(Device).order_by(Device.device_id)).all())


def live_state_columns(session: Session) -> list[tuple[str, str, str, float | None]]:
    """(device id, type, zone, threshold) of every device, for the live state. Plain rows, not
    ORM objects: 10,000 devices in ~10 ms of CPU instead of ~150, on every refresh."""
    columns = (Device.device_id, Device.device_type, Device.zone, Device.threshold)
    rows = session.execute(select(*columns))
    return [(r.device_id, r.device_type, r.zone, r.threshold) for r in rows]


def get_device(session: Session, device_id: str) -> Device | None:
    return session.get(Device, device_id)


def create_device(session: Session, new: DeviceCreate) -> Device:
    device = _new_device(new, datetime.now(UTC))
    session.add(device)
    session.commit()
    return device


def upsert_devices(session: Session, devices: Iterable[DeviceCreate]) -> int:
    """Register ``devices``: create each one, or overwrite the fields it gives (an operator's
    threshold or name on a device registered again stays); returns how many."""
    now = datetime.now(UTC)
    count = 0
    for new in devices:
        device = session.get(Device, new.device_id)
        if device is None:
            session.add(_new_device(new, now))
        else:
            _change(device, new.model_dump(exclude_unset=True), now)
        count += 1
    session.commit()
    return count


def update_device(session: Session, device: Device, change: DeviceUpdate) -> Device:
    values = {
        name: value
        for name, value in change.model_dump(exclude_unset=True).items()
        # required columns: null means "leave as is"
        if value is not None or name not in ("device_type", "zone", "lat", "lon")
    }
    _change(device, values, datetime.now(UTC))
    session.commit()
    return device


def _new_device(new: DeviceCreate, now: datetime) -> Device:
    return Device(**new.model_dump(), created_at=now, updated_at=now)


def _change(device: Device, values: dict[str, object], now: datetime) -> None:
    for name, value in values.items():
        setattr(device, name, value)
    device.updated_at = now


def delete_device(session: Session, device: Device) -> None:
    session.delete(device)
    session.commit()


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)).all())


def revoke_key(session: Session, key_id: str) -> ApiKey | None:
    row = session.get(ApiKey, key_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        session.commit()
    return row
