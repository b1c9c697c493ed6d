"""The city's live state: one consistent set of figures behind KPIs, alerts and zones.

Computing it takes a handful of InfluxDB queries (a snapshot and window sums per device type,
plus connectors, Last Wills and edge-agent health), run one after the other. The result is
cached for ``kpi_cache_seconds`` and refreshed in the background while the previous one is
served, so a request never waits for a recomputation once the first one is done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.kpis import KPI_MODULES, DeviceState, Snapshot
from api.kpis.base import snapshot_rows_to_states, window_values
from api.registry import crud
from api.settings import ApiSettings
from smartcity.devices.evcharger import Evcharger
from smartcity.influx import InfluxReader, at, ident
from smartcity.storage import HEALTH_MEASUREMENT, STATUS_MEASUREMENT

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
    threshold: float | None = None


@dataclass(frozen=True)
class CityState:
    now: datetime
    settings: ApiSettings
    snapshots: dict[str, Snapshot]
    #: device type -> its window KPIs' values (``api.kpis.base.window_values``)
    windows: dict[str, dict[str, float | None]]
    #: device id -> its latest offline status (the MQTT Last Will), if one fired recently
    status: dict[str, DeviceState]
    #: device id -> its edge agent's latest heartbeat
    health: dict[str, DeviceState]
    registry: dict[str, Registered]
    #: EV charging stations' connectors: device id -> each connector's latest point
    connectors: dict[str, list[DeviceState]]
    #: Answers derived from this state (alerts, the catalogue's JSON...), computed once each.
    derived: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def latest_readings(self) -> dict[str, DeviceState]:
        """Device id -> its latest reading, for every device heard in the look-back window."""
        return self.derive(
            "latest", lambda: {d.device_id: d for s in self.snapshots.values() for d in s.devices}
        )

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
    db: InfluxReader,
    measurement: str,
    start: datetime,
    end: datetime,
    also: tuple[str, ...] = (),
    thresholds: Mapping[str, float] | None = None,
) -> list[DeviceState]:
    rows = await db.rows(
        LATEST_PER_DEVICE, {"m": ident(measurement), "from": at(start), "to": at(end)}
    )
    # thousands of devices: off the event loop, like the decoding of the rows
    return await asyncio.to_thread(snapshot_rows_to_states, rows, also, thresholds)


async def compute(settings: ApiSettings, db: InfluxReader, engine: Engine) -> CityState:
    """The state now. Queries run one after the other on purpose: at city scale each keeps an
    InfluxDB core busy for up to a second, and one at a time leaves CPU for serving requests."""
    now = clock(settings)
    since = now - timedelta(hours=settings.lookback_hours)
    fresh_since = now - timedelta(minutes=settings.offline_after_minutes)
    registry = await asyncio.to_thread(read_registry, engine)
    limits = {d: r.threshold for d, r in registry.items() if r.threshold is not None}
    snapshots, windows = {}, {}
    for t, module in KPI_MODULES.items():
        devices = await latest_per_device(
            db, t, since, now, thresholds=limits if module.uses_threshold else None
        )
        snapshots[t] = Snapshot(devices, fresh_since)
        windows[t] = await window_values(db, module.device, now)
    connectors: dict[str, list[DeviceState]] = defaultdict(list)
    for c in await latest_per_device(
        db, Evcharger.connector_measurement(), since, now, ("connector_id",)
    ):
        connectors[c.device_id].append(c)
    return CityState(
        now=now,
        settings=settings,
        snapshots=snapshots,
        windows=windows,
        status={d.device_id: d for d in await last_wills(db, since, now)},
        health={
            d.device_id: d for d in await latest_per_device(db, HEALTH_MEASUREMENT, since, now)
        },
        registry=registry,
        connectors=dict(connectors),
    )


async def last_wills(db: InfluxReader, start: datetime, end: datetime) -> list[DeviceState]:
    """Each device's latest *offline* status (its Last Will): far fewer than all statuses."""
    rows = await db.rows(
        "SELECT * FROM $m WHERE time > $from AND time <= $to AND online = $zero "
        "GROUP BY * ORDER BY time DESC LIMIT 1",
        {"m": ident(STATUS_MEASUREMENT), "from": at(start), "to": at(end), "zero": 0},
    )
    return snapshot_rows_to_states(rows)


def read_registry(engine: Engine) -> dict[str, Registered]:
    with Session(engine) as session:
        return {row[0]: Registered(*row) for row in crud.live_state_columns(session)}


class StateCache:
    """Serves the last state while a fresh one is computed (stale-while-revalidate).

    A new state is ``prepare``d (its answers derived) in a worker thread before it replaces the
    old one, so that work never stalls requests on the event loop.
    """

    def __init__(
        self,
        compute: Callable[[], Awaitable[CityState]],
        ttl: float,
        prepare: Callable[[CityState], None] = lambda state: None,
    ) -> None:
        self.compute = compute
        self.prepare = prepare
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
            await asyncio.to_thread(self.prepare, value)
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
