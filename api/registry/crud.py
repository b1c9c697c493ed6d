"""Registry reads and writes; the routers stay free of SQL."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar, TypeVarTuple

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from api.schemas.devices import DeviceCreate, DeviceUpdate
from smartcity import audit
from smartcity.registry.models import ApiKey, AuditEntry, Device

T = TypeVar("T")

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


def revoke_key(session: Session, key_id: str, actor: str) -> ApiKey | None:
    """Revoke ``key_id`` (None if there is no such key), recorded in the audit trail in the same
    commit; asking to revoke an unknown key is recorded as refused."""
    row = session.get(ApiKey, key_id)
    if row is None:
        audit.record(session, actor=actor, action="key.revoke", outcome="refused: no such key",
                     detail={"key_id": key_id})  # fmt: skip
    else:
        detail = {"key_id": key_id, "name": row.name, "scope": row.scope}
        if row.revoked_at is None:
            row.revoked_at = datetime.now(UTC)
        else:
            detail["already_revoked"] = "yes"
        audit.record(session, actor=actor, action="key.revoke", detail=detail)
    session.commit()
    return row


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """The filters of ``GET /v1/audit``: times in UTC, ``since`` included and ``until`` not (so
    consecutive periods never share an entry); the others match exactly."""

    since: datetime | None = None
    until: datetime | None = None
    device_id: str | None = None
    action: str | None = None
    actor: str | None = None

    def apply(self, query: Select[T]) -> Select[T]:
        if self.since is not None:
            query = query.where(AuditEntry.at >= self.since)
        if self.until is not None:
            query = query.where(AuditEntry.at < self.until)
        for column, value in (
            (AuditEntry.device_id, self.device_id),
            (AuditEntry.action, self.action),
            (AuditEntry.actor, self.actor),
        ):
            if value is not None:
                query = query.where(column == value)
        return query


def list_audit(
    session: Session, where: AuditFilter, limit: int, offset: int
) -> tuple[list[AuditEntry], int]:
    """A page of the audit entries matching ``where``, newest first, and how many match."""
    total = session.scalar(where.apply(select(func.count()).select_from(AuditEntry)))
    rows = session.scalars(
        where.apply(select(AuditEntry))
        .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), int(total or 0)
