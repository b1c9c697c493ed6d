"""Registry tables. Only SQLAlchemy here: the ingester imports this module to read zones.

Portable SQL only (no SQLite or PostgreSQL specifics), so the same models run on both.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import Date, DateTime, Dialect, Float, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite hands back naive ones otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Device(Base):
    """A device installed in the city: what it is and where."""

    __tablename__ = "devices"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_type: Mapped[str] = mapped_column(String(32), index=True)
    zone: Mapped[str] = mapped_column(String(64), index=True)
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    installed_on: Mapped[date | None] = mapped_column(Date, default=None)
    #: Bins: the fill level (0-1) at which this one counts as full; None = the global setting.
    threshold: Mapped[float | None] = mapped_column(Float, default=None)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    #: When its broker credentials were revoked (``smartcity devices revoke``, ``DELETE
    #: /v1/devices/{id}/credentials``); None = not revoked. A revoked device stays registered,
    #: so its history keeps its type and zone, but its broker client is disabled for good.
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    #: A LoRaWAN device's DevEUI (16 lower-case hex digits), by which ``smartcity lorawan`` finds
    #: it; None for devices that speak the contract themselves.
    dev_eui: Mapped[str | None] = mapped_column(String(16), unique=True, default=None)
    #: The LoRaWAN profile (sensor model) that decodes its payloads, ``smartcity.lorawan_profiles``.
    lorawan_profile: Mapped[str | None] = mapped_column(String(64), default=None)
    #: EV chargers: salted hash of the OCPP password (HTTP Basic, security profiles 1 and 2)
    #: issued by provisioning (smartcity.charger_auth); the password itself is kept nowhere.
    ocpp_password_hash: Mapped[str | None] = mapped_column(String(200), default=None)
    #: EV chargers: what the charger said of itself in its last OCPP BootNotification.
    charger_vendor: Mapped[str | None] = mapped_column(String(20), default=None)
    charger_model: Mapped[str | None] = mapped_column(String(20), default=None)
    charger_serial: Mapped[str | None] = mapped_column(String(25), default=None)
    charger_firmware: Mapped[str | None] = mapped_column(String(50), default=None)
    booted_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)

    __table_args__ = (Index("ix_devices_lat_lon", "lat", "lon"),)


class ApiKey(Base):
    """An API key: only a SHA-256 of its secret is kept (see ``api.security``)."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    scope: Mapped[str] = mapped_column(String(8))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    #: When the key last authenticated, to the minute (``api.security`` writes it at most once a
    #: minute per key); None if never used since this column exists.
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)


class AuditEntry(Base):
    """One action on the platform, for the record the AGID minimum security measures ask for
    (Circolare 2/2017): when, who, what, on which device, with what outcome.

    Append-only: :mod:`smartcity.audit` adds rows and refuses any update or delete of one made
    through SQLAlchemy; no interface of the platform offers either.
    """

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    #: ``key:<key id>`` for an API key, ``cli:<OS user>`` for a command run on a server.
    actor: Mapped[str] = mapped_column(String(120))
    #: What was done, e.g. ``device.provision``, ``device.update``, ``key.create``, ``command``.
    action: Mapped[str] = mapped_column(String(64), index=True)
    device_id: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    #: ``ok``, or what went wrong (``refused: ...``, ``failed: ...``).
    outcome: Mapped[str] = mapped_column(String(200))
    #: What changed, as short JSON or text; never a secret.
    detail: Mapped[str] = mapped_column(Text, default="")
