"""Zones and types from the device registry, so points carry what the city registered.

Optional (``--registry-url``, off by default): with it, the ingester tags each point with the
device's registered zone (it wins over the zone in the payload, which a misconfigured device may
get wrong), dead-letters a message whose topic names another device type than the registered
one (``type_mismatch``: a street light must not raise a burning-bin alert), and counts messages
from devices the registry does not know in the ``device_unregistered`` measurement.
SQLAlchemy is imported only when this is enabled, so a plain ingester does not need it. The
registry is read in full at start and then re-read by a background thread every ``refresh``
seconds; lookups are dictionary reads, never a query.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    from ingest.settings import IngestSettings

log = logging.getLogger("smartcity.ingest.registry")


class Registration(NamedTuple):
    zone: str
    device_type: str


class ZoneLookup(Protocol):
    def lookup(self, device_id: str) -> Registration | None:
        """The device's registered zone and type; None if the registry does not know it."""
        ...


class RegistryZones:
    def __init__(self, url: str, refresh: float = 60.0) -> None:
        try:
            from smartcity.registry.db import make_engine
        except ModuleNotFoundError:
            from smartcity.settings import SettingsError

            raise SettingsError(
                "--registry-url needs SQLAlchemy: pip install 'smartcity-cremona[ingest]'"
            ) from None
        # the API's own engine set-up: a bad URL or a missing driver is a SettingsError saying
        # what to fix, and SQLite waits for the API's writes instead of failing as locked.
        # Tables are not created here: the API owns them, and until they exist (or whenever
        # the registry cannot be read) the zones known so far are kept.
        self.engine = make_engine(url, create=False)
        self.refresh = refresh
        self.devices: dict[str, Registration] = {}
        self.load()
        threading.Thread(target=self._keep_fresh, name="registry-refresh", daemon=True).start()

    def load(self) -> None:
        from sqlalchemy import select
        from sqlalchemy.exc import SQLAlchemyError

        from smartcity.registry.models import Device

        try:
            with self.engine.connect() as conn:
                rows = conn.execute(select(Device.device_id, Device.zone, Device.device_type)).all()
        except SQLAlchemyError as exc:  # e.g. the API has not created the tables yet
            log.warning("registry not readable; keeping the zones known so far",
                        extra={"error": str(exc).splitlines()[0][:200]})  # fmt: skip
        else:
            # one assignment: lookups see the old map or the new
            self.devices = {device_id: Registration(z, t) for device_id, z, t in rows}

    def lookup(self, device_id: str) -> Registration | None:
        return self.devices.get(device_id)

    def _keep_fresh(self) -> None:
        while True:
            time.sleep(self.refresh)
            try:
                self.load()
            except Exception as exc:  # the thread must live on to retry
                log.warning("registry re-read failed; keeping the zones known so far",
                            extra={"error": repr(exc)[:200]})  # fmt: skip


def registry_zones(settings: IngestSettings) -> RegistryZones | None:
    """The lookup the settings ask for, or None when no registry is configured."""
    if not settings.registry_url:
        return None
    return RegistryZones(settings.registry_url, settings.registry_refresh)
