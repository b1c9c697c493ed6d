"""What a device type's KPI module provides, and the data it works from.

Live figures come from two kinds of data: the **snapshot** (the latest point of every device of
the type seen in the look-back window, one query per type) for "now" figures such as lamps on,
and **window** queries for sums over a period such as energy in the last 24 h. Both are fetched
once per refresh by ``api.state`` and shared by the catalogue, alerts and zone endpoints, so
their numbers always agree.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from api.opendata.datasets import Dataset
from api.schemas.alerts import AlertKind, Severity
from api.settings import ApiSettings
from smartcity.devices import DeviceType
from smartcity.influx import InfluxReader, Row, at, ident

JOULES_PER_KWH = 3.6e6


@dataclass(frozen=True, slots=True)
class DeviceState:
    """A device's latest point."""

    device_id: str
    device_type: str
    zone: str
    time: datetime
    fields: dict[str, Any]
    #: The alert threshold the registry sets for this device, if any (see ``uses_threshold``).
    threshold: float | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The latest point of each device of one type; ``fresh`` ones report within the limit."""

    devices: list[DeviceState]
    fresh_since: datetime

    @property
    def fresh(self) -> list[DeviceState]:
        return [d for d in self.devices if d.time > self.fresh_since]


@dataclass(frozen=True, slots=True)
class Figure:
    """A KPI's live value, optionally broken down (e.g. by stream, then zone)."""

    value: float | None
    breakdown: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class AlertDraft:
    kind: AlertKind
    severity: Severity
    device: DeviceState
    value: float | str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


#: A condition on a device's latest point, e.g. "the lamp is on".
Check = Callable[[DeviceState, ApiSettings], bool]


@dataclass(frozen=True, slots=True)
class Period:
    """The window a KPI sums over: (start, end]."""

    start: datetime
    end: datetime

    @classmethod
    def last(cls, end: datetime, hours: float) -> Period:
        return cls(end - timedelta(hours=hours), end)

    def params(self) -> dict[str, object]:
        return {"from": at(self.start), "to": at(self.end)}


class DeviceKpis(ABC):
    """One device type's KPIs, alerts and zone figures; one module per type."""

    device: ClassVar[type[DeviceType]]
    #: KPI ids this module computes (the catalogue names them and sets targets).
    kpi_ids: ClassVar[tuple[str, ...]]
    #: Figures per zone (the zone summary), each a count of fresh devices.
    zone_counts: ClassVar[dict[str, Check]] = {}
    #: Whether the registry may set a per-device ``threshold`` this type's checks use.
    uses_threshold: ClassVar[bool] = False
    #: Italian and English text of each alert kind it raises, formatted with the draft's
    #: ``value``, its ``detail`` and :meth:`message_values`.
    alert_messages: ClassVar[dict[str, tuple[str, str]]] = {}
    #: Its open datasets (``/v1/opendata/{id}``), listed in ``api.opendata.registry``.
    datasets: ClassVar[tuple[Dataset, ...]] = ()
    #: Points of a device's parts (a charger's connectors), fetched with the live state:
    #: (measurement, tag naming the part); None for a type whose readings say it all.
    parts: ClassVar[tuple[str, str] | None] = None

    def message_values(self, alert: AlertDraft) -> dict[str, object]:
        """Values an alert's message needs beyond its value and detail (a share as a percent)."""
        return {}

    def latest_extras(self, parts: list[DeviceState]) -> dict[str, Any]:
        """What a device's latest answer (``GET /v1/devices/{id}/latest``) carries beside its
        reading, from the latest points of its ``parts``: keyword arguments of ``LatestPublic``.
        """
        return {}

    @abstractmethod
    async def window(
        self, db: InfluxReader, end: datetime, settings: ApiSettings
    ) -> dict[str, float]:
        """Sums over recent periods ending at ``end`` (energy, sessions...)."""

    @abstractmethod
    def kpis(
        self, snap: Snapshot, window: dict[str, float], settings: ApiSettings
    ) -> dict[str, Figure]:
        """Every KPI in ``kpi_ids``."""

    @abstractmethod
    def alerts(self, snap: Snapshot, settings: ApiSettings) -> list[AlertDraft]:
        """Alerts raised by fresh devices' latest readings."""

    def zone_figures(self, snap: Snapshot, settings: ApiSettings) -> dict[str, Counter[str]]:
        """Per zone, how many fresh devices meet each ``zone_counts`` condition."""
        out: dict[str, Counter[str]] = defaultdict(Counter)
        for d in snap.fresh:
            for name, test in self.zone_counts.items():
                out[d.zone][name] += int(test(d, settings))
        return out


async def scalar(db: InfluxReader, q: str, params: dict[str, object], column: str = "v") -> float:
    """The single value of an aggregate query (0 when there is no data)."""
    rows = await db.rows(q, params)
    value = rows[0].values.get(column) if rows else None
    return float(value) if value is not None else 0.0


async def sum_of_spreads(db: InfluxReader, measurement: str, meter: str, period: Period) -> float:
    """Energy from cumulative meters: per device, last minus first reading, summed."""
    return await scalar(
        db,
        "SELECT sum(s) AS v FROM (SELECT spread($f) AS s FROM $m "
        "WHERE time > $from AND time <= $to GROUP BY device_id)",
        {"m": ident(measurement), "f": ident(meter), **period.params()},
    )


async def count_events(db: InfluxReader, measurement: str, kind: str, period: Period) -> float:
    """How many events of ``kind`` happened in ``period`` (each event point has count=1)."""
    return await scalar(
        db,
        'SELECT sum("count") AS v FROM $m WHERE "kind" = $kind AND time > $from AND time <= $to',
        {"m": ident(measurement), "kind": kind, **period.params()},
    )


def count_by(devices: Iterable[DeviceState], *keys: Callable[[DeviceState], str]) -> dict[str, Any]:
    """Nested counts, e.g. ``count_by(bins, stream, zone)`` -> {stream: {zone: n}}."""
    out: dict[str, Any] = {}
    for d in devices:
        node = out
        for key in keys[:-1]:
            node = node.setdefault(key(d), {})
        last = keys[-1](d)
        node[last] = node.get(last, 0) + 1
    return out


def snapshot_rows_to_states(
    rows: list[Row], also: tuple[str, ...] = (), thresholds: Mapping[str, float] | None = None
) -> list[DeviceState]:
    """Latest point per device id, or per device and the ``also`` tags (kept as fields), with
    the registry's ``thresholds`` per device id.

    A device whose zone changed has two series: the newest point wins.
    """
    limits = thresholds or {}
    latest: dict[tuple[str, ...], DeviceState] = {}
    for r in rows:
        key = (r.tags.get("device_id", ""), *(r.tags.get(t, "") for t in also))
        if key in latest and latest[key].time >= r.time:
            continue
        latest[key] = DeviceState(
            key[0], r.tags.get("device_type", r.measurement), r.tags.get("zone", ""), r.time,
            {**r.values, **{t: r.tags.get(t, "") for t in also}}, limits.get(key[0]),
        )  # fmt: skip
    return [latest[k] for k in sorted(latest)]
