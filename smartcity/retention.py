"""Retention and rollups: raw readings for a while, hourly and daily aggregates for years.

Everything is generated from the device types (``DeviceType.stored()``), so a new type gets its
rollups with no edit here. InfluxDB does the work with its own mechanisms:

* retention policies: raw in the default ``autogen`` (shortened to ``raw_retention``), rollups
  in ``hourly`` and ``daily`` (kept ``hourly_retention`` / ``daily_retention``, default forever);
* continuous queries roll up the open window every few minutes and each window again after it
  closes (``RESAMPLE EVERY ... FOR``), so readings a little late are included;
* readings later than that (an edge outbox flushed after an outage, ``simulate --backfill``)
  are marked by the ingester in the same write (``ROLLUP_PENDING_MEASUREMENT``), and
  :func:`catch_up` recomputes exactly those windows with ``SELECT ... INTO``.

Readers choose the resolution from the range asked (:func:`choose`) and read rollups up to
:func:`settled` and raw after it, so a long range costs a few thousand rollup points, not
millions of readings, and still ends at the newest reading.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import Field, field_validator

from smartcity.devices import DEVICE_TYPES
from smartcity.devices.base import Stored
from smartcity.influx import InfluxReader, InfluxWriter, QueryFailed, Row
from smartcity.kpis import Hours, Kpi, Now, Ratio, Rollup, Total
from smartcity.lineprotocol import line
from smartcity.settings import InfluxSettings
from smartcity.storage import (
    COUNTER_AGGREGATE,
    DAILY_RETENTION_POLICY,
    EVENT_COUNT_FIELD,
    HOURLY_RETENTION_POLICY,
    RAW_RETENTION_POLICY,
    ROLLUP_AGGREGATES,
    ROLLUP_CQ_PREFIX,
    ROLLUP_PENDING_FIELDS,
    ROLLUP_PENDING_MEASUREMENT,
    STATE_AGGREGATE,
    rollup_field,
)

log = logging.getLogger("smartcity.retention")

#: An InfluxQL retention duration: ``INF`` or a whole number of hours, days or weeks.
DURATION = re.compile(r"^(INF|[1-9][0-9]{0,5}[hdw])$")
HOUR = 3600
DAY = 86400


class RetentionSettings(InfluxSettings):
    section = "storage"

    raw_retention: str = Field(
        "90d",
        description="How long raw readings are kept (InfluxDB duration: 90d, 26w, INF); older "
        "ones are dropped by InfluxDB, their hourly and daily rollups stay.",
    )
    hourly_retention: str = Field("INF", description="How long hourly rollups are kept.")
    daily_retention: str = Field("INF", description="How long daily rollups are kept.")
    hourly_refresh: str = Field(
        "5m",
        pattern=r"^([1-9]|[1-5][0-9])m$|^1h$",
        description="How often the hour in progress is rolled up (1m-59m, or 1h: only once "
        "closed): the KPIs that read rollups are at most this far behind. Each run reads two "
        "hours of readings: at city scale, 15m-1h (docs/operations.md).",
    )

    @field_validator("raw_retention", "hourly_retention", "daily_retention")
    @classmethod
    def _duration(cls, value: str) -> str:
        value = "INF" if value.strip().upper() == "INF" else value.strip()
        if not DURATION.match(value):
            raise ValueError("must be INF or a number of hours, days or weeks, e.g. 90d, 26w")
        if _seconds(value) < DAY:
            raise ValueError("must be at least 1d (InfluxDB refuses shorter policies)")
        return value


def _seconds(duration: str) -> float:
    """``90d`` in seconds (``INF`` is infinite)."""
    if duration == "INF":
        return float("inf")
    return int(duration[:-1]) * {"h": HOUR, "d": DAY, "w": 7 * DAY}[duration[-1]]


@dataclass(frozen=True)
class Resolution:
    """Where data of one resolution lives: its retention policy and window (0 = raw)."""

    name: str
    policy: str
    period_s: int
    #: ``RESAMPLE EVERY ... FOR ...`` of its continuous query: how often it runs (the open
    #: window too, so a rollup is at most that stale), and how late readings may be to be
    #: rolled up by InfluxDB itself (later ones: :func:`catch_up`).
    cq_every: str = ""
    cq_for: str = ""
    #: Shard group length of a rollup policy: few, long shards for years of small data
    #: (InfluxDB's default for an infinite policy is 7 days: 52 shards and indexes a year).
    shard: str = ""

    @property
    def group(self) -> str:
        return f"{self.period_s // HOUR}h" if self.period_s < DAY else f"{self.period_s // DAY}d"


RAW = Resolution("raw", RAW_RETENTION_POLICY, 0)
HOURLY = Resolution("hourly", HOURLY_RETENTION_POLICY, HOUR, "5m", "2h", shard="4w")
DAILY = Resolution("daily", DAILY_RETENTION_POLICY, DAY, "1h", "2d", shard="52w")
ROLLUPS = (HOURLY, DAILY)
RESOLUTIONS = {r.name: r for r in (RAW, *ROLLUPS)}
#: A rollup is read from a range this long (and a step of whole windows) on.
HOURLY_FROM_SPAN_S = 2 * DAY
DAILY_FROM_SPAN_S = 60 * DAY
#: Time after a window closes before readers trust its rollup: its query has run once more
#: (every 5 minutes for hours, every hour for days), with a margin.
SETTLE_S = {HOUR: 420, DAY: 3900}


# -- what is rolled up ---------------------------------------------------------------------------


def sources() -> list[Stored]:
    """Every measurement a device type writes, with its fields by kind."""
    return [s for t in DEVICE_TYPES.values() for s in t.stored()]


def rolled_up(measurement: str, field: str) -> bool:
    """Whether ``field`` of ``measurement`` has numeric rollups (``<field>_mean``...)."""
    return any(
        s.measurement == measurement and field in (*s.gauges, *s.counters) for s in sources()
    )


def aggregates(source: Stored) -> list[tuple[str, str, str]]:
    """``(function, field, rollup field)`` for every value a window of ``source`` keeps."""
    out: list[tuple[str, str, str]] = []
    for f in (*source.gauges, *source.counters):
        out += [(a, f, rollup_field(f, a)) for a in ROLLUP_AGGREGATES]
    for f in source.counters:
        out.append((COUNTER_AGGREGATE, f, rollup_field(f, COUNTER_AGGREGATE)))
    for f in source.states:
        out.append((STATE_AGGREGATE, f, rollup_field(f, STATE_AGGREGATE)))
    if source.events:
        out.append(("sum", EVENT_COUNT_FIELD, EVENT_COUNT_FIELD))
    return out


def q(name: str) -> str:
    """A quoted InfluxQL identifier (our own names only: never request input)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _of_hours(fn: str, field: str, out: str) -> str:
    """A day's aggregate from its hours' rollup: what ``fn(field)`` over the raw points is."""
    if fn == "mean":
        return f"sum({q(rollup_field(field, 'sum'))}) / sum({q(rollup_field(field, 'count'))})"
    if fn == COUNTER_AGGREGATE:
        return f"max({q(rollup_field(field, 'max'))}) - min({q(rollup_field(field, 'min'))})"
    if fn in ("sum", "count"):
        return f"sum({q(out)})"
    return f"{fn}({q(out)})"


def rollup_select(db: str, source: Stored, res: Resolution, where: str = "") -> str:
    """``SELECT ... INTO`` the rollup of ``source`` at ``res``, per window and series: hours
    from raw points, days from the hours (24 points a series, not thousands of readings; the
    same numbers: a mean is the sum of sums over the sum of counts, a spread the highest
    maximum less the lowest minimum)."""
    if res is DAILY:
        cols = ", ".join(
            f"{_of_hours(fn, f, out)} AS {q(out)}" for fn, f, out in aggregates(source)
        )
        below = HOURLY.policy
    else:
        cols = ", ".join(f"{fn}({q(f)}) AS {q(out)}" for fn, f, out in aggregates(source))
        below = RAW.policy
    into = f"{q(db)}.{q(res.policy)}.{q(source.measurement)}"
    src = f"{q(db)}.{q(below)}.{q(source.measurement)}"
    cond = f" WHERE {where}" if where else ""
    return f"SELECT {cols} INTO {into} FROM {src}{cond} GROUP BY time({res.group}), *"


def continuous_queries(db: str, hourly_every: str = "5m") -> dict[str, str]:
    """The continuous queries by name; a name carries a hash of its text, so a changed type
    (a new field) gets a new query and the old one is dropped."""
    out: dict[str, str] = {}
    for source in sources():
        for res in ROLLUPS:
            body = rollup_select(db, source, res)
            every = hourly_every if res is HOURLY else res.cq_every
            schedule = f"{every} {res.cq_for}"
            digest = hashlib.sha256(f"{schedule} {body}".encode()).hexdigest()[:8]
            name = f"{ROLLUP_CQ_PREFIX}{res.name}_{source.measurement}_{digest}"
            out[name] = (
                f"CREATE CONTINUOUS QUERY {q(name)} ON {q(db)} "
                f"RESAMPLE EVERY {every} FOR {res.cq_for} "
                f"BEGIN {body} END"
            )
    return out


# -- setting up ----------------------------------------------------------------------------------


@dataclass
class InitReport:
    created: list[str]
    altered: list[str]
    queries_created: list[str]
    queries_dropped: list[str]
    windows_rolled_up: int

    def summary(self) -> str:
        parts = [
            f"policies created: {', '.join(self.created) or 'none'}",
            f"altered: {', '.join(self.altered) or 'none'}",
            f"continuous queries created: {len(self.queries_created)}, "
            f"dropped: {len(self.queries_dropped)}",
        ]
        if self.windows_rolled_up:
            parts.append(f"history rolled up: {self.windows_rolled_up} queries")
        return "; ".join(parts)


async def statement(
    influx: InfluxWriter, text: str, params: dict[str, object] | None = None
) -> Any:
    """Run one statement; raise with InfluxDB's reason if it is refused or unreachable."""
    try:
        body = await influx.query(text, params)
    except httpx.HTTPError as exc:
        raise RetentionError(f"InfluxDB failed {text[:60]!r}: {type(exc).__name__} {exc}") from exc
    results = body.get("results")
    result = results[0] if isinstance(results, list) and results else {}
    if isinstance(body.get("error"), str):
        raise RetentionError(f"InfluxDB refused {text[:80]!r}: {body['error']}")
    if "error" in result:
        raise RetentionError(f"InfluxDB refused {text[:80]!r}: {result['error']}")
    return result


class RetentionError(RuntimeError):
    """InfluxDB refused a retention or rollup statement (the message has its reason)."""


async def policies(influx: InfluxWriter) -> dict[str, str]:
    """The database's retention policies and their durations (``0s`` = forever)."""
    db = influx.settings.influx_db
    result = await statement(influx, f"SHOW RETENTION POLICIES ON {q(db)}")
    out: dict[str, str] = {}
    for series in result.get("series", []):
        for row in series["values"]:
            out[row[0]] = row[1]
    return out


def _same_duration(shown: str, wanted: str) -> bool:
    """InfluxDB shows ``2160h0m0s`` for ``90d`` and ``0s`` for ``INF``."""
    if wanted == "INF":
        return shown == "0s"
    m = re.fullmatch(r"(\d+)h(\d+)m(\d+)s", shown)
    return bool(m) and int(m.group(1)) * HOUR == _seconds(wanted)  # type: ignore[union-attr]


async def init(influx: InfluxWriter, settings: RetentionSettings) -> InitReport:
    """Set up policies and continuous queries, idempotently, keeping every point stored.

    On the first run on a database that already holds readings, their rollups are computed
    from the raw data before the raw policy is shortened, so no history is lost.
    """
    db = influx.settings.influx_db
    await influx.ensure_database()
    have = await policies(influx)
    report = InitReport([], [], [], [], 0)
    wanted = {HOURLY: settings.hourly_retention, DAILY: settings.daily_retention}
    for res, duration in wanted.items():
        name = res.policy
        if name not in have:
            await statement(
                influx,
                f"CREATE RETENTION POLICY {q(name)} ON {q(db)} DURATION {duration} "
                f"REPLICATION 1 SHARD DURATION {_shard(res.shard, duration)}",
            )
            report.created.append(name)
        elif not _same_duration(have[name], duration):
            await statement(
                influx, f"ALTER RETENTION POLICY {q(name)} ON {q(db)} DURATION {duration}"
            )
            report.altered.append(name)
    if report.created:
        # a database that predates the rollups: roll up what it holds, before the raw
        # policy below is shortened
        report.windows_rolled_up = await roll_up_history(influx)
    created, dropped = await create_queries(influx, settings.hourly_refresh)
    report.queries_created, report.queries_dropped = created, dropped
    raw = have.get(RAW.policy)
    if raw is not None and not _same_duration(raw, settings.raw_retention):
        await statement(
            influx,
            f"ALTER RETENTION POLICY {q(RAW.policy)} ON {q(db)} "
            f"DURATION {settings.raw_retention} DEFAULT",
        )
        report.altered.append(RAW.policy)
    return report


def _shard(shard: str, duration: str) -> str:
    """The shard length, no longer than the policy (InfluxDB refuses longer)."""
    return shard if _seconds(shard) <= _seconds(duration) else duration


async def create_queries(
    influx: InfluxWriter, hourly_every: str = "5m"
) -> tuple[list[str], list[str]]:
    """Create the continuous queries missing and drop former ones (a type changed); returns
    ``(created, dropped)``. Also after a restore: InfluxDB's backups do not carry them."""
    db = influx.settings.influx_db
    existing = await _our_queries(influx)
    desired = continuous_queries(db, hourly_every)
    dropped = sorted(set(existing) - set(desired))
    for name in dropped:
        await statement(influx, f"DROP CONTINUOUS QUERY {q(name)} ON {q(db)}")
    created = [name for name in desired if name not in existing]
    for name in created:
        await statement(influx, desired[name])
    return created, dropped


async def _our_queries(influx: InfluxWriter) -> list[str]:
    result = await statement(influx, "SHOW CONTINUOUS QUERIES")
    db = influx.settings.influx_db
    return [
        row[0]
        for series in result.get("series", [])
        if series.get("name") == db
        for row in series.get("values", [])
        if row[0].startswith(ROLLUP_CQ_PREFIX)
    ]


async def _extent(influx: InfluxWriter, measurement: str) -> tuple[int, int] | None:
    """The first and last raw time of a measurement, in epoch seconds."""
    src = f"{q(RAW.policy)}.{q(measurement)}"
    times = []
    for order in ("ASC", "DESC"):
        result = await statement(influx, f"SELECT * FROM {src} ORDER BY time {order} LIMIT 1")
        series = result.get("series") or []
        if not series:
            return None
        times.append(_epoch(series[0]["values"][0][0]))
    return times[0], times[1]


def _epoch(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())


async def roll_up_history(
    influx: InfluxWriter, start: int | None = None, end: int | None = None
) -> int:
    """Recompute every rollup between ``start`` and ``end`` (epoch s; default: all raw data),
    hours then days, in :func:`_recompute`'s chunks. Returns the number of queries run."""
    runs = 0
    for source in sources():
        extent = await _extent(influx, source.measurement)
        if extent is None:
            continue
        first = max(extent[0], start) if start is not None else extent[0]
        last = min(extent[1], end) if end is not None else extent[1]
        for res in ROLLUPS:
            runs += await _recompute(influx, source, res, [(first, last + 1)], None)
    return runs


async def _recompute(
    influx: InfluxWriter,
    source: Stored,
    res: Resolution,
    spans: Iterable[tuple[int, int]],
    device_id: str | None,
) -> int:
    """Roll up whole windows of ``res`` covering each ``(start, end)`` span: at most 6 hours of
    raw readings per query for hours, 31 days of hourly rows for days, so that each query
    stays seconds long at city scale (the days read the hours: recompute those first)."""
    db = influx.settings.influx_db
    step = 6 * HOUR if res is HOURLY else 31 * DAY
    runs = 0
    for start, end in spans:
        a = start - start % res.period_s
        while a < end:
            b = min(a + step, end + (-end % res.period_s))
            where = "time >= $a AND time < $b"
            params: dict[str, object] = {"a": _at(a), "b": _at(b)}
            if device_id is not None:
                where += " AND device_id = $d"
                params["d"] = device_id
            await statement(influx, rollup_select(db, source, res, where), params)
            runs += 1
            a = b
    return runs


def _at(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- late readings -------------------------------------------------------------------------------


def late_before(now: float) -> int:
    """Readings stamped before this (epoch s) are too late for the hourly continuous query,
    which covers the last two hours each time it runs: their windows need :func:`catch_up`."""
    return int(now) - int(now) % HOUR - HOUR


def pending_line(worker: str, device_type: str, device_id: str, hour: int, stamp_ns: int) -> str:
    """The marker the ingester writes beside a late reading: this device's window ``hour``."""
    values = (device_type, device_id, hour)
    return line(
        ROLLUP_PENDING_MEASUREMENT,
        {"worker": worker},
        dict(zip(ROLLUP_PENDING_FIELDS, values, strict=True)),
        stamp_ns,
    )


#: Beyond this many devices late in one window, the window is recomputed for every device at
#: once (one query) rather than device by device.
WHOLE_WINDOW_DEVICES = 20


async def catch_up(influx: InfluxWriter, delay_s: float = 30.0, limit: int = 50_000) -> int:
    """Recompute the windows marked pending, then delete the markers read (markers written
    meanwhile are newer, so they stay for the next round). Returns the markers handled.

    Only markers at least ``delay_s`` old: a write spans shards (the readings' days, the
    marker's today) and a query may see the marker before the readings are all in; a write
    still unfinished after the writer's timeout (30 s) is retried, marker included.

    Does nothing (and keeps the markers) until ``smartcity storage init`` has created the
    rollup policies: its first run rolls up all history anyway.
    """
    have = await policies(influx)
    if any(r.policy not in have for r in ROLLUPS):
        return 0
    fields = ", ".join(q(f) for f in ROLLUP_PENDING_FIELDS)
    result = await statement(
        influx,
        f"SELECT {fields} FROM {q(RAW.policy)}.{q(ROLLUP_PENDING_MEASUREMENT)} "
        f"WHERE time <= now() - {int(delay_s * 1000)}ms ORDER BY time LIMIT {int(limit)}",
    )
    rows = [v for s in result.get("series", []) for v in s["values"]]
    if not rows:
        return 0
    # (type, window) -> devices, per resolution
    late: dict[Resolution, dict[tuple[str, int], set[str]]] = {r: defaultdict(set) for r in ROLLUPS}
    for _t, device_type, device_id, hour in rows:
        if device_type not in DEVICE_TYPES:
            continue
        for res in ROLLUPS:
            window = int(hour) - int(hour) % res.period_s
            late[res][(device_type, window)].add(device_id)
    for res, windows in late.items():
        whole: dict[str, list[int]] = defaultdict(list)
        for (device_type, window), devices in sorted(windows.items()):
            if len(devices) > WHOLE_WINDOW_DEVICES:
                whole[device_type].append(window)
                continue
            for source in DEVICE_TYPES[device_type].stored():
                for device in sorted(devices):
                    span = (window, window + res.period_s)
                    await _recompute(influx, source, res, [span], device)
        for device_type, starts in whole.items():
            for source in DEVICE_TYPES[device_type].stored():
                await _recompute(influx, source, res, _runs(starts, res.period_s), None)
    last = rows[-1][0]
    await statement(
        influx,
        f"DELETE FROM {q(ROLLUP_PENDING_MEASUREMENT)} WHERE time <= $t",
        {"t": last},
    )
    log.info("late windows rolled up", extra={"markers": len(rows)})
    return len(rows)


def _runs(starts: list[int], period: int) -> list[tuple[int, int]]:
    """Consecutive windows merged into spans."""
    spans: list[tuple[int, int]] = []
    for s in sorted(starts):
        if spans and spans[-1][1] == s:
            spans[-1] = (spans[-1][0], s + period)
        else:
            spans.append((s, s + period))
    return spans


# -- reading ----------------------------------------------------------------------------------


def tags() -> frozenset[str]:
    """Every tag a device point carries: the common ones, event attributes, connectors."""
    from smartcity.devices.base import union_members
    from smartcity.storage import DEVICE_TAGS

    names = set(DEVICE_TAGS) | {"connector_id"}
    for t in DEVICE_TYPES.values():
        for model in union_members(t.event_model):
            names |= set(getattr(model, "TAGS", {}).values())
    return frozenset(names)


def kpi_rollup(kpi: Kpi) -> Rollup | None:
    """The rollup a KPI reads (hourly: a local day is whole UTC hours), or None for raw: the
    "now" KPIs, windows shorter than ``HOURLY_FROM_SPAN_S``, and KPIs with a condition on a
    field (a rollup keeps no single reading to test). The API and the boards both ask here,
    so they read the same resolution and show the same number."""
    window = kpi.window
    if isinstance(window, Now) or (
        isinstance(window, Hours) and window.hours * HOUR < HOURLY_FROM_SPAN_S
    ):
        return None
    m = kpi.measure
    totals = (m.part, m.whole) if isinstance(m, Ratio) else (m,) if isinstance(m, Total) else ()
    conditions = [w.name for t in totals for w in t.where]
    if any(name not in tags() for name in conditions):
        return None
    events = frozenset(s.measurement for s in sources() if s.events)
    fields = [(t.measurement, f) for t in totals for f in (t.field, t.minus) if f is not None]
    if not totals:
        fields = [(m.measurement, m.field)]  # type: ignore[union-attr]
    for measurement, field in fields:
        if not (measurement in events and field == EVENT_COUNT_FIELD) and not rolled_up(
            measurement, field
        ):
            return None
    return Rollup(HOURLY.policy, events)


def choose(start: datetime, end: datetime, step_s: float | None = None) -> Resolution:
    """The resolution to read ``start``-``end`` at: raw for short ranges, hourly from
    ``HOURLY_FROM_SPAN_S``, daily from ``DAILY_FROM_SPAN_S``; a rollup only when the step (if
    any) is whole windows of it, so every point is made of whole windows."""
    span = (end - start).total_seconds()
    for res, from_span in ((DAILY, DAILY_FROM_SPAN_S), (HOURLY, HOURLY_FROM_SPAN_S)):
        if span >= from_span and (step_s is None or step_s % res.period_s == 0):
            return res
    return RAW


def settled(res: Resolution, now: datetime | None = None) -> datetime:
    """Windows of ``res`` before this are rolled up (their query ran); readers take the rest
    from raw. For raw, ``now`` itself."""
    now = now or datetime.now(UTC)
    if res is RAW:
        return now
    t = now.timestamp() - SETTLE_S[res.period_s]
    return datetime.fromtimestamp(t - t % res.period_s, UTC)


def split(
    res: Resolution,
    start: datetime,
    end: datetime,
    now: datetime | None = None,
    align_s: int | None = None,
) -> tuple[tuple[datetime, datetime] | None, tuple[datetime, datetime] | None]:
    """``(rollup part, raw part)`` of a range: rollups up to :func:`settled`, raw after it;
    the cut falls on a multiple of ``align_s`` (a series' step), so no step mixes the two."""
    if res is RAW:
        return None, (start, end)
    cut = settled(res, now)
    if align_s:
        t = cut.timestamp()
        cut = datetime.fromtimestamp(t - t % align_s, UTC)
    cut = min(max(cut, start), end)
    rolled = (start, cut) if cut > start else None
    raw = (cut, end) if end > cut else None
    return rolled, raw


async def rollup_rows(
    db: InfluxReader, query: str, params: Mapping[str, object]
) -> list[Row] | None:
    """A rollup query's rows, or None on a database without rollups yet (``storage init``
    never ran): the caller reads raw readings instead."""
    try:
        return await db.rows(query, params)
    except QueryFailed as exc:
        if "retention policy not found" in str(exc):
            return None
        raise


def hours(ts: Iterable[float]) -> set[int]:
    """The hourly windows (epoch s) of some times (epoch s)."""
    return {int(t) - int(t) % HOUR for t in ts}
