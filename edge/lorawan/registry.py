"""LoRaWAN devices from the device registry, by DevEUI or by id.

Read on each lookup (one indexed query): a device provisioned while the bridge runs is found at
its first uplink, and an unknown DevEUI is never guessed.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from edge.lorawan.bridge import Known
from smartcity.registry.db import make_engine
from smartcity.registry.models import Device


class Registry:
    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)

    def by_eui(self, dev_eui: str) -> Known | None:
        return self._one(Device.dev_eui == dev_eui)

    def by_id(self, device_id: str) -> Known | None:
        return self._one(Device.device_id == device_id)

    def _one(self, where: object) -> Known | None:
        with Session(self.engine) as session:
            device = session.scalars(select(Device).where(where)).one_or_none()  # type: ignore[arg-type]
            if device is None or device.dev_eui is None or device.lorawan_profile is None:
                return None
            if device.revoked_at is not None:
                return None
            return Known(
                device.device_id, device.device_type, device.zone, device.dev_eui,
                device.lorawan_profile,
            )  # fmt: skip
