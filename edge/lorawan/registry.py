"""LoRaWAN devices from the device registry, by DevEUI or by id.

A device found is remembered for ``ttl`` seconds (a query per uplink would cap the bridge at a
few hundred uplinks a second); one not found is looked up again at each of its messages, so a
device provisioned while the bridge runs is found at its first uplink, and an unknown DevEUI is
never guessed. A revoked device is dropped within ``ttl``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from edge.lorawan.bridge import Known
from smartcity.registry.db import make_engine
from smartcity.registry.models import Device


class Registry:
    def __init__(self, url: str, ttl: float = 60.0) -> None:
        self.engine = make_engine(url)
        self.ttl = ttl
        self._seen: dict[str, tuple[float, Known]] = {}

    def by_eui(self, dev_eui: str) -> Known | None:
        return self._cached(f"eui:{dev_eui}", lambda: self._one(Device.dev_eui == dev_eui))

    def by_id(self, device_id: str) -> Known | None:
        return self._cached(f"id:{device_id}", lambda: self._one(Device.device_id == device_id))

    def _cached(self, key: str, find: Callable[[], Known | None]) -> Known | None:
        now = time.monotonic()
        hit = self._seen.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        found = find()
        if found is None:
            self._seen.pop(key, None)
        else:
            self._seen[key] = (now, found)
        return found

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
