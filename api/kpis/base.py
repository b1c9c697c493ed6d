"""What a device type's KPI module provides, and how the API computes the declared KPIs.

The KPIs themselves are declared once, with the device type (``smartcity.kpis``, e.g.
``Streetlight.kpis``); this module computes them the way the boards do. Figures come from two
kinds of data: the **snapshot** (the latest point of every device of the type seen in the
look-back window, one query per type) for "now" KPIs (:class:`~smartcity.kpis.Latest`,
:class:`~smartcity.kpis.Band`), evaluated here with the declaration's own condition, and
**window** values for the others, each the InfluxQL of :func:`smartcity.kpis.statements` with
the window's bounds bound. Both are fetched once per refresh by ``api.state`` and shared by the
catalogue, alerts and zone endpoints, so their numbers always agree.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from api.opendata.datasets import Dataset
from api.schemas.alerts import AlertKind, Severity
from api.settings import ApiSettings
from smartcity import retention
from smartcity.devices import DeviceType
from smartcity.influx import InfluxReader, Row, at
from smartcity.kpis import ZONE, Band, Kpi, Latest, combine, statements

#: The time condition of every window statement, with the window's bounds bound.
API_TIME = "time > $from AND time <= $to"


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


class DeviceKpis(ABC):
    """One device type's alerts and zone figures; its KPIs are its declarations
    (``device.kpis``). One module per type."""

    device: ClassVar[type[DeviceType]]
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

    @property
    def kpi_ids(self) -> tuple[str, ...]:
        """KPI ids the type declares (the catalogue names them)."""
        return tuple(k.id for k in self.device.kpis)

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


def limit(kpi: Kpi, d: DeviceState, settings: ApiSettings) -> float | None:
    """The limit of a per-device condition for this device: the registry's threshold, else
    the global ``--bin-threshold``; None for other conditions (the declared value)."""
    m = kpi.measure
    if not isinstance(m, Latest) or m.where is None or not m.where.per_device:
        return None
    return d.threshold if d.threshold is not None else settings.bin_threshold


def meets(kpi: Kpi) -> Check:
    """The condition of a "now" count KPI on one device (``lamps_failed`` -> "has failed"), for
    alerts and zone figures: the very definition the KPI counts with."""
    m = kpi.measure
    if not isinstance(m, Latest):
        raise TypeError(f"KPI {kpi.id} is not about devices' latest readings")
    return lambda d, s: m.keeps(d.fields.get(m.field), limit(kpi, d, s))


def api_statements(kpi: Kpi, raw: bool = False) -> tuple[str, ...]:
    """The InfluxQL the API runs for a window KPI; ``$from``/``$to`` bound at each run. From
    the rollup the boards read too (``retention.kpi_rollup``), unless ``raw``."""
    return statements(kpi, API_TIME, rollup=None if raw else retention.kpi_rollup(kpi))


async def window_values(
    db: InfluxReader, device: type[DeviceType], end: datetime
) -> dict[str, float | None]:
    """Every window KPI of the type (not the "now" ones), over the window ending at ``end``."""
    out: dict[str, float | None] = {}
    for kpi in device.kpis:
        if isinstance(kpi.measure, Latest | Band):
            continue
        bounds = {"from": at(kpi.window.start(end)), "to": at(end)}
        results = []
        for q, raw in zip(api_statements(kpi), api_statements(kpi, raw=True), strict=True):
            rows = await retention.rollup_rows(db, q, bounds)
            if rows is None:  # a database without rollups (storage init never ran)
                rows = await db.rows(raw, bounds)
            value = rows[0].values.get("value") if rows else None
            results.append(float(value) if value is not None else None)
        out[kpi.id] = combine(kpi, results)
    return out


def figures(
    device: type[DeviceType],
    snap: Snapshot,
    window: Mapping[str, float | None],
    settings: ApiSettings,
) -> dict[str, Figure]:
    """Every KPI the type declares: "now" ones from the snapshot, the others from ``window``."""
    out = {}
    for kpi in device.kpis:
        figure = _now(kpi, snap, settings) if kpi.id not in window else Figure(window[kpi.id])
        if figure.value is not None and kpi.decimals is not None:
            figure = Figure(round(figure.value, kpi.decimals), figure.breakdown)
        out[kpi.id] = figure
    return out


def _now(kpi: Kpi, snap: Snapshot, settings: ApiSettings) -> Figure:
    m = kpi.measure
    if isinstance(m, Band):
        values = [v for d in snap.fresh if isinstance(v := d.fields.get(m.field), int | float)]
        bands = Counter(m.labels[m.band(float(v)) - 1] for v in values)
        return Figure(combine(kpi, [max(values) if values else None]), dict(bands))
    assert isinstance(m, Latest)
    value = m.value((d.fields.get(m.field), limit(kpi, d, settings)) for d in snap.fresh)
    if not m.breakdown:
        return Figure(value)
    kept = [d for d in snap.fresh if meets(kpi)(d, settings)]
    keys = [_key(name) for name in m.breakdown]
    return Figure(value, count_by(kept, *keys))


def _key(name: str) -> Callable[[DeviceState], str]:
    if name == ZONE:
        return lambda d: d.zone
    return lambda d: str(d.fields.get(name, "unknown"))


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
