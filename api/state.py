"""The city's live state: one consistent set of figures behind KPIs, alerts and zones.

Computing it takes a handful of InfluxDB queries (a snapshot and window sums per device type,
plus device status and health), run concurrently. The result is cached for
``kpi_cache_seconds`` and refreshed in the background while the previous one is served, so a
request never waits for a recomputation once the first one is done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.influx import InfluxReader, at, ident
from api.kpis import KPI_MODULES, DeviceState, Snapshot
from api.kpis.base import snapshot_rows_to_states
from api.registry import crud
from api.settings import ApiSettings
from ingest.convert import HEALTH_MEASUREMENT, STATUS_MEASUREMENT

log = logging.getLogger("smartcity.api")
T = TypeVar("T")

LATEST_PER_DEVICE = (
    "SELECT * FROM $m WHERE time > $from AND time <= $to GROUP BY * ORDER BY time DESC LIMIT 1"
)


@dataclass(frozen=True, slots=True)
class Registered:
    """A registry entry, detached from its database session."""

    device_id: str
    device_type: str
    zone: str


@dataclass(frozen=True)
class CityState:
    now: datetime
    settings: ApiSettings
    snapshots: dict[str, Snapshot]
    windows: dict[str, dict[str, float]]
    status: dict[str, DeviceState]
    health: dict[str, DeviceState]
    registry: dict[str, Registered]
    #: Answers derived from this state (alerts, the catalogue's JSON...), computed once each.
    derived: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def offline_before(self) -> datetime:
        return self.now - timedelta(minutes=self.settings.offline_after_minutes)

    def derive(self, key: str, build: Callable[[], T]) -> T:
        """``build()``'s result, computed on first use for this state and reused until the next.

        Every request between two refreshes sees the same state, so the work of turning it
        into an answer is done once, not per request.
        """
        if key not in self.derived:
            self.derived[key] = build()
        value: T = self.derived[key]
        return value


def clock(settings: ApiSettings) -> datetime:
    """Now, or the moment ``--as-of`` replays."""
    return settings.as_of.astimezone(UTC) if settings.as_of else datetime.now(UTC)


async def latest_per_device(
    db: InfluxReader, measurement: str, start: datetime, end: datetime
) -> list[DeviceState]:
    rows = await db.rows(
        LATEST_PER_DEVICE, {"m": ident(measurement), "from": at(start), "to": at(end)}
    )
    return snapshot_rows_to_states(rows)


async def compute(settings: ApiSettings, db: InfluxReader, engine: Engine) -> CityState:
    now = clock(settings)
    since = now - timedelta(hours=settings.lookback_hours)
    fresh_since = now - timedelta(minutes=settings.offline_after_minutes)
    types = list(KPI_MODULES)
    snapshots, windows, status, health, registry = await asyncio.gather(
        asyncio.gather(*(latest_per_device(db, t, since, now) for t in types)),
        asyncio.gather(*(KPI_MODULES[t].window(db, now, settings) for t in types)),
        latest_per_device(db, STATUS_MEASUREMENT, since, now),
        latest_per_device(db, HEALTH_MEASUREMENT, since, now),
        asyncio.to_thread(read_registry, engine),
    )
    return CityState(
        now=now,
        settings=settings,
        snapshots={t: Snapshot(s, fresh_since) for t, s in zip(types, snapshots, strict=True)},
        windows=dict(zip(types, windows, strict=True)),
        status={d.device_id: d for d in status},
        health={d.device_id: d for d in health},
        registry=registry,
    )


def read_registry(engine: Engine) -> dict[str, Registered]:
    with Session(engine) as session:
        return {
            d.device_id: Registered(d.device_id, d.device_type, d.zone)
            for d in crud.all_devices(session)
        }


class StateCache:
    """Serves the last state while a fresh one is computed (stale-while-revalidate)."""

    def __init__(self, compute: Callable[[], Awaitable[CityState]], ttl: float) -> None:
        self.compute = compute
        self.ttl = ttl
        self.value: CityState | None = None
        self.stamp = 0.0
        self.task: asyncio.Task[CityState] | None = None

    async def get(self) -> CityState:
        age = time.monotonic() - self.stamp
        if self.value is not None and age < self.ttl:
            return self.value
        task = self._refresh()
        if self.value is not None and self.ttl > 0:
            return self.value
        return await asyncio.shield(task)

    def _refresh(self) -> asyncio.Task[CityState]:
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(), name="state-refresh")
        return self.task

    async def _run(self) -> CityState:
        started = time.monotonic()
        try:
            value = await self.compute()
        except Exception as exc:
            if self.value is not None:
                log.warning("live figures not refreshed; serving the last ones", exc_info=exc)
                return self.value
            raise
        self.value, self.stamp = value, started
        return value

    def invalidate(self) -> None:
        """After a registry change, so the next request sees it."""
        self.stamp = 0.0
