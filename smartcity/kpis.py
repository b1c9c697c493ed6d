"""KPIs declared once, as data, and the one place their InfluxQL is written.

A device type declares its KPIs next to its models (``Streetlight.kpis`` in
``smartcity/devices/streetlight.py``): what is measured (a measure naming the type's measurement
and fields), over which window, with which filter and aggregation, its unit and target. The API
(``api.kpis``) and the Grafana boards (``grafana.panels``) both read the declarations, and both
take their InfluxQL from :func:`statements`, so an operator never sees two numbers for one KPI
(``tests/test_kpi_agreement.py`` checks every declared KPI on a real InfluxDB). The format is
described in ``docs/kpis.md``.

Measures for "now" (:class:`Latest`, :class:`Band`) look at each device's latest reading; the API
evaluates them on the snapshot it already holds (:meth:`Latest.value`), so per-device limits from
the registry can apply. The others sum, average or count over a window of points and are only
InfluxQL. :func:`statements` takes the measurement to read as a parameter (``source``), so a
long window can read an hourly or daily rollup instead of raw points.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, TypeAlias
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from smartcity.city import TIMEZONE
from smartcity.storage import DEVICE_TAGS, EVENT_COUNT_FIELD, rollup_field

DEVICE_ID, _DEVICE_TYPE, ZONE = DEVICE_TAGS
#: A device whose latest reading is older is not "now": out of the "now" KPIs. The API's
#: ``--offline-after-minutes`` defaults to it; the boards' "now" panels look this far back.
FRESH_MINUTES = 15
#: The column every KPI statement returns its number in.
VALUE = "value"

Op = Literal["=", "!=", ">", ">=", "<", "<="]
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


def quote(name: str) -> str:
    """An InfluxQL identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal(value: float | str) -> str:
    """An InfluxQL literal: a quoted string or a number."""
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    # InfluxQL has no exponent notation: 1.6e-05 must be written 0.000016
    return format(Decimal(repr(float(value))), "f")


class Names:
    """Field and tag names of models, checked when the declaration is read:
    ``Names(StreetlightReading).activePower == "activePower"``; a typo is an AttributeError."""

    def __init__(self, *models: type[BaseModel], extra: Iterable[str] = ()) -> None:
        names = set(extra)
        for model in models:
            names |= set(model.model_fields)
            tags = getattr(model, "TAGS", {})  # an event's attributes stored as tags
            names |= set(tags.values()) if isinstance(tags, dict) else set()
        self._names = frozenset(names)

    def __getattr__(self, name: str) -> str:
        if name.startswith("_") or name not in self._names:
            raise AttributeError(f"no field or tag {name!r} in {sorted(self._names)}")
        return name


@dataclass(frozen=True)
class Where:
    """A condition on one field or tag: ``Where("activePower", ">", 0)``."""

    name: str
    op: Op
    value: float | str
    #: The registry's per-device threshold replaces ``value`` where one is set, and the API's
    #: ``--bin-threshold`` replaces it elsewhere. The API only: Grafana cannot read the
    #: registry, so boards use ``value`` (the setting's default).
    per_device: bool = False

    def influxql(self, column: str | None = None) -> str:
        return f"{quote(column or self.name)} {self.op} {literal(self.value)}"

    def holds(self, value: object, limit: float | str | None = None) -> bool:
        """Whether a value meets the condition (None never does), against ``limit`` if given."""
        if value is None:
            return False
        bound = self.value if limit is None else limit
        if isinstance(bound, str):
            return _OPS[self.op](str(value), bound)
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        return _OPS[self.op](float(value), float(bound))


# -- windows -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Now:
    """Each device's latest reading, of the devices heard in the last :data:`FRESH_MINUTES`."""

    def start(self, end: datetime) -> datetime:
        return end - timedelta(minutes=FRESH_MINUTES)

    def relative(self) -> str:
        """Grafana's panel "relative time" for this window."""
        return f"{FRESH_MINUTES}m"

    def words(self) -> str:
        return "now"


@dataclass(frozen=True)
class Hours:
    """The last ``hours`` up to now."""

    hours: int

    def start(self, end: datetime) -> datetime:
        return end - timedelta(hours=self.hours)

    def relative(self) -> str:
        return f"{self.hours}h" if self.hours % 24 else f"{self.hours // 24}d"

    def words(self) -> str:
        return f"the last {self.hours} hours" if self.hours % 24 else f"the last {self.relative()}"


@dataclass(frozen=True)
class ThisYear:
    """From 1 January, 00:00 in the city's time zone, up to now (EU air-quality limits count
    exceedances per calendar year)."""

    def start(self, end: datetime) -> datetime:
        local = end.astimezone(ZoneInfo(TIMEZONE))
        return local.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)

    def relative(self) -> str:
        return "now/y"

    def words(self) -> str:
        return "this year so far"


Window: TypeAlias = Now | Hours | ThisYear
NOW = Now()


# -- measures ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Latest:
    """Each device's latest ``field``: the devices whose value meets ``where`` are counted
    (``count``), or their values summed (``sum``) or the highest taken (``max``)."""

    measurement: str
    field: str
    aggregate: Literal["count", "sum", "max"] = "count"
    where: Where | None = None
    #: The API breaks the value down by these fields or tags (e.g. stream, then zone).
    breakdown: tuple[str, ...] = ()

    def value(self, latest: Iterable[tuple[object, float | str | None]]) -> float | None:
        """The KPI from (latest value, per-device limit or None) pairs, one per fresh device:
        what :func:`statements` computes in InfluxQL, for the API's snapshot."""
        kept = [v for v, limit in latest if v is not None and self.keeps(v, limit)]
        if self.aggregate == "count":
            return float(len(kept))
        numbers = [float(v) for v in kept if isinstance(v, int | float)]
        if self.aggregate == "sum":
            return float(sum(numbers))
        return max(numbers) if numbers else None

    def keeps(self, value: object, limit: float | str | None = None) -> bool:
        return self.where is None or self.where.holds(value, limit)


@dataclass(frozen=True)
class Band:
    """Each device's latest ``field`` in bands: band 1 below ``edges[0]``, band 2 from it, and
    so on; the KPI is the worst device's band (the band of the highest value), ``labels`` name
    them, and the API breaks it down by band."""

    measurement: str
    field: str
    edges: tuple[float, ...]
    labels: tuple[str, ...]

    def band(self, value: float) -> int:
        return 1 + sum(value >= e for e in self.edges)


@dataclass(frozen=True)
class Increase:
    """How much a cumulative meter (lifetime kWh) rose in the window: per device, its highest
    minus its lowest reading, summed over devices."""

    measurement: str
    field: str


@dataclass(frozen=True)
class Total:
    """``aggregate`` of ``field`` (minus the same of ``minus``) over the window's points that
    meet every ``where``, times ``scale`` (e.g. hours per reading / 1000 for W -> kWh)."""

    measurement: str
    field: str
    where: tuple[Where, ...] = ()
    minus: str | None = None
    scale: float = 1.0
    aggregate: Literal["sum", "mean", "count", "max"] = "sum"


@dataclass(frozen=True)
class Ratio:
    """``part`` as a percentage of ``whole`` (both :class:`Total`); null when ``whole`` is 0."""

    part: Total
    whole: Total


@dataclass(frozen=True)
class Exceedances:
    """Per device, how many ``every`` periods (``1h``, ``1d``: clock hours, local days) of the
    window have a mean ``field`` above ``limit``; the KPI is the worst device's count."""

    measurement: str
    field: str
    every: Literal["1h", "1d"]
    limit: float


@dataclass(frozen=True)
class DeviceMean:
    """Per device, the mean ``field`` over the window; the KPI is the worst (highest) one."""

    measurement: str
    field: str


Measure: TypeAlias = Latest | Band | Increase | Total | Ratio | Exceedances | DeviceMean
NOW_MEASURES = (Latest, Band)


@dataclass(frozen=True)
class Target:
    """The value the KPI should reach, and who sets it (a plan line, an article of law)."""

    op: Literal[">=", ">", "<=", "<"]
    value: float
    source: str


@dataclass(frozen=True)
class Kpi:
    """One KPI: its id (as the catalogue and the API name it), what it measures and over which
    window, its unit and target. Words for people are in the catalogue file; ``title_it`` and
    ``description`` are the board panel's title and help."""

    id: str
    title_it: str
    description: str
    unit: str
    measure: Measure
    window: Window = NOW
    target: Target | None = None
    #: Digits the API rounds to and the board shows; None: as computed.
    decimals: int | None = None
    #: Boards show the value in red from here (e.g. one failed lamp); None: no alarm colour.
    alarm: float | None = None
    #: Also a headline number on the city overview.
    headline: bool = False

    def __post_init__(self) -> None:
        now = isinstance(self.measure, NOW_MEASURES)
        if now != isinstance(self.window, Now):
            raise ValueError(f"KPI {self.id}: Latest and Band measures, and only they, use Now")
        if (
            isinstance(self.measure, Band)
            and len(self.measure.labels) != len(self.measure.edges) + 1
        ):
            raise ValueError(f"KPI {self.id}: a Band needs one label more than edges")

    def empty(self) -> float | None:
        """The value when no point is in the window: none counted, or unknown for means,
        bands and shares."""
        return None if isinstance(self.measure, Band | DeviceMean | Ratio) else 0.0


# -- InfluxQL ----------------------------------------------------------------------------------


def _where(conditions: Iterable[str]) -> str:
    parts = list(conditions)
    return " WHERE " + " AND ".join(parts) if parts else ""


@dataclass(frozen=True)
class Rollup:
    """Read a rollup policy instead of raw points (``smartcity.retention.kpi_rollup`` decides
    when: a long window whose conditions are all on tags). Each aggregate of raw points
    becomes the aggregate of the rollup's fields that equals it: ``sum(f)`` is
    ``sum(f_sum)``, ``mean(f)`` is ``sum(f_sum) / sum(f_count)``, a device's ``spread(f)`` is
    ``max(f_max) - min(f_min)``; an event's ``count`` field holds the events per window."""

    policy: str
    #: Event measurements: their rollup's ``count`` is the number of events.
    events: frozenset[str] = frozenset()

    def table(self, measurement: str) -> str:
        return f"{quote(self.policy)}.{quote(measurement)}"

    def agg(self, measurement: str, fn: str, field: str) -> str:
        """The rollup expression for ``fn(field)`` over raw points."""
        if measurement in self.events and field == EVENT_COUNT_FIELD:
            return f"sum({quote(field)})"  # count("count") and sum("count") alike
        f = {a: quote(rollup_field(field, a)) for a in ("sum", "count", "min", "max", "last")}
        if fn == "mean":
            return f"(sum({f['sum']}) / sum({f['count']}))"
        if fn == "spread":
            return f"(max({f['max']}) - min({f['min']}))"
        if fn in ("sum", "count"):
            return f"sum({f[fn]})"
        return f"{fn}({f[fn]})"


def _agg(fn: str, field: str, measurement: str, rollup: Rollup | None) -> str:
    return rollup.agg(measurement, fn, field) if rollup else f"{fn}({quote(field)})"


def _table(measurement: str, source: str | None, rollup: Rollup | None) -> str:
    name = source or measurement
    return rollup.table(name) if rollup else quote(name)


def _total(
    t: Total, scope: list[str], source: str | None, rollup: Rollup | None, percent: bool = False
) -> str:
    agg = t.aggregate
    expr = _agg(agg, t.field, t.measurement, rollup)
    if t.minus is not None:
        expr = f"({expr} - {_agg(agg, t.minus, t.measurement, rollup)})"
    scale = t.scale * (100 if percent else 1)
    if scale != 1:
        expr = f"{literal(scale)} * {expr}"
    where = _where([*(w.influxql() for w in t.where), *scope])
    return f"SELECT {expr} AS {quote(VALUE)} FROM {_table(t.measurement, source, rollup)}{where}"


def statements(
    kpi: Kpi,
    time: str,
    filters: Iterable[str] = (),
    source: str | None = None,
    rollup: Rollup | None = None,
) -> tuple[str, ...]:
    """The InfluxQL computing ``kpi``, each statement returning one row with :data:`VALUE`.

    One statement, or two for a :class:`Ratio` (the part, already times 100, and the whole:
    the KPI is the first over the second). ``time`` is the time condition (Grafana's
    ``$timeFilter``, the API's bound ``time > $from AND time <= $to``), ``filters`` further
    conditions (the boards' zone and device-type variables), ``source`` the measurement to
    read instead of the declared one, and ``rollup`` the rollup policy to read it from (see
    :class:`Rollup`; the same number within the rollup's precision, from far fewer points).
    """
    m = kpi.measure
    scope = [*filters, time]
    v = quote(VALUE)
    if isinstance(m, Ratio):
        return (
            _total(m.part, scope, source, rollup, percent=True),
            _total(m.whole, scope, source, rollup),
        )
    if isinstance(m, Total):
        return (_total(m, scope, source, rollup),)
    if isinstance(m, Latest | Band):
        table, field = quote(source or m.measurement), quote(m.field)  # the latest: raw only
        inner = f'SELECT last({field}) AS "v" FROM {table}{_where(scope)} {_PER_DEVICE}'
        if isinstance(m, Band):
            return (f'SELECT max("v") AS {v} FROM ({inner})',)
        keep = _where([m.where.influxql("v")] if m.where else [])
        return (f'SELECT {m.aggregate}("v") AS {v} FROM ({inner}){keep}',)
    table = _table(m.measurement, source, rollup)
    if isinstance(m, Increase):
        spread = _agg("spread", m.field, m.measurement, rollup)
        inner = f'SELECT {spread} AS "v" FROM {table}{_where(scope)} {_PER_DEVICE}'
        return (f'SELECT sum("v") AS {v} FROM ({inner})',)
    mean = _agg("mean", m.field, m.measurement, rollup)
    if isinstance(m, DeviceMean):
        inner = f'SELECT {mean} AS "v" FROM {table}{_where(scope)} {_PER_DEVICE}'
        return (f'SELECT max("v") AS {v} FROM ({inner})',)
    # Exceedances: per device and period the mean, then per device the periods over the limit
    means = (
        f'SELECT {mean} AS "m" FROM {table}{_where(scope)} '
        f"GROUP BY time({m.every}), {quote(DEVICE_ID)} tz({literal(TIMEZONE)})"
    )
    over = f'SELECT count("m") AS "n" FROM ({means}) WHERE "m" > {literal(m.limit)} {_PER_DEVICE}'
    return (f'SELECT max("n") AS {v} FROM ({over})',)


_PER_DEVICE = f"GROUP BY {quote(DEVICE_ID)}"


def combine(kpi: Kpi, results: list[float | None]) -> float | None:
    """The KPI from the values of its :func:`statements` (None: the statement had no row)."""
    if isinstance(kpi.measure, Ratio):
        part, whole = results
        return (part or 0.0) / whole if whole else None
    (value,) = results
    if value is None:
        return kpi.empty()
    if isinstance(kpi.measure, Band):
        return float(kpi.measure.band(value))
    return value


def find(kpis: Iterable[Kpi], kpi_id: str) -> Kpi:
    """The KPI ``kpi_id`` of a type's declarations (a KeyError names the known ones)."""
    found = {k.id: k for k in kpis}
    if kpi_id not in found:
        raise KeyError(f"no KPI {kpi_id!r}; declared: {', '.join(found)}")
    return found[kpi_id]
