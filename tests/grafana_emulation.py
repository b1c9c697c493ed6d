"""What Grafana does to a board's queries before InfluxDB sees them, and to their results.

No Grafana server can run here, so the tests stand in for it: they interpolate the macros and
variables the way Grafana's InfluxDB data source does, run the query on the real InfluxDB, and
evaluate the few server-side expressions the boards and alert rules use (math ``$A / $B``,
reduce, threshold). What this cannot check is listed in ``tests/test_grafana_queries.py``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

#: Grafana's rounding of the auto interval (``rangeutil.roundInterval``): (up to ms, interval).
_ROUNDING = (
    (15, "10ms"), (35, "20ms"), (75, "50ms"), (150, "100ms"), (350, "200ms"), (750, "500ms"),
    (1_500, "1s"), (3_500, "2s"), (7_500, "5s"), (12_500, "10s"), (17_500, "15s"),
    (25_000, "20s"), (45_000, "30s"), (90_000, "1m"), (210_000, "2m"), (450_000, "5m"),
    (750_000, "10m"), (1_050_000, "15m"), (1_500_000, "20m"), (2_700_000, "30m"),
    (5_400_000, "1h"), (9_000_000, "2h"), (16_200_000, "3h"), (27_000_000, "6h"),
    (43_200_000, "12h"), (129_600_000, "1d"),
)  # fmt: skip
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
#: Characters Grafana's InfluxDB data source escapes in a regex-formatted variable value.
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")
ALL = "$__all"


def duration_ms(text: str) -> int:
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)", text)
    if not m:
        raise ValueError(f"not a Grafana duration: {text!r}")
    return int(m.group(1)) * _UNITS_MS[m.group(2)]


def round_interval(ms: float) -> str:
    return next((name for limit, name in _ROUNDING if ms <= limit), "1d")


@dataclass(frozen=True)
class Range:
    """A relative time range ``now-{seconds}s`` to now, as a board's time picker sets it."""

    seconds: int
    max_data_points: int = 1000

    def time_filter(self, now_ms: int) -> str:
        """Grafana's backend resolves the range once per request, in epoch milliseconds, so
        every query of a panel (and of an alert rule) sees the very same bounds."""
        return f"time >= {now_ms - self.seconds * 1000}ms and time <= {now_ms}ms"

    def interval(self, min_interval: str | None, datasource_min: str) -> tuple[str, int]:
        """``$__interval`` and ``$__interval_ms``: range over data points, never below the
        panel's (else the data source's) minimum interval."""
        raw = self.seconds * 1000 / self.max_data_points
        floor = duration_ms(min_interval or datasource_min)
        name = round_interval(raw) if raw > floor else (min_interval or datasource_min)
        return name, duration_ms(name)


def relative_range(time_from: str, now_ms: int, timezone: str) -> Range:
    """A panel's own time range (its "relative time", ``timeFrom``): ``24h`` is the last 24
    hours, ``now/y`` this year so far in the board's time zone."""
    if time_from == "now/y":
        now = datetime.fromtimestamp(now_ms / 1000, ZoneInfo(timezone))
        start = now.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
        return Range(int((now - start).total_seconds()))
    return Range(duration_ms(time_from) // 1000)


def regex_value(values: Sequence[str] | str, all_value: str) -> str:
    """A multi-value variable in a regex, as Grafana formats it for InfluxDB."""
    if values == ALL:
        return all_value
    escaped = [_REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def interpolate(
    query: str,
    time_range: Range,
    variables: dict[str, str],
    min_interval: str | None = None,
    datasource_min: str = "10s",
    now_ms: int | None = None,
) -> str:
    interval, interval_ms = time_range.interval(min_interval, datasource_min)
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    out = query.replace("$timeFilter", time_range.time_filter(now))
    out = re.sub(r"\$__interval_ms\b", str(interval_ms), out)
    out = re.sub(r"\$__interval\b", interval, out)
    for name, value in variables.items():
        out = re.sub(rf"\$\{{{name}\}}|\${name}\b", lambda _m, v=value: v, out)
    leftover = re.search(r"\$\w+", out)
    if leftover:
        raise AssertionError(f"Grafana would leave {leftover.group(0)} in: {out}")
    return out


@dataclass
class Series:
    """One series of a query result: its tags (Grafana's labels) and (time, value) points."""

    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]]

    def points(self, column: int = -1) -> list[tuple[Any, Any]]:
        return [(row[0], row[column]) for row in self.values]

    def numbers(self) -> list[float]:
        out = []
        for row in self.values:
            for v in row[1:]:
                if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                    out.append(float(v))
        return out

    def has_data(self) -> bool:
        return any(v is not None for row in self.values for v in row[1:])


def series(result: dict[str, Any]) -> list[Series]:
    return [Series(s.get("tags", {}), s["columns"], s["values"]) for s in result.get("series", [])]


def math_ratio(expression: str, results: dict[str, list[Series]]) -> list[Series]:
    """Grafana's math expression ``$A / $B`` on two time series results: joined by labels
    (a series without labels matches any), then point by point on equal timestamps."""
    m = re.fullmatch(r"\$(\w+) / \$(\w+)", expression)
    if not m:
        raise AssertionError(f"the tests only evaluate '$A / $B' expressions, not {expression!r}")
    num, den = results[m.group(1)], results[m.group(2)]
    out = []
    for a in num:
        for b in den:
            if a.tags and b.tags and a.tags != b.tags:
                continue
            by_time = dict(b.points())
            values = [
                [t, v / by_time[t]]
                for t, v in a.points()
                if v is not None and by_time.get(t) not in (None, 0)
            ]
            out.append(Series(a.tags or b.tags, ["time", "value"], values))
    return out


def mapped(value: float, mappings: list[dict[str, Any]]) -> float | str:
    """A number as a panel shows it after its value mappings: the text of the first mapping
    that matches (a ``value`` one by its text form, a ``range`` one with both ends included
    and a null end unbounded), else the number."""
    for m in mappings:
        options = m["options"]
        if m["type"] == "value" and str(value) in options:
            return str(options[str(value)]["text"])
        if m["type"] == "range":
            low, high = options.get("from"), options.get("to")
            if (low is None or value >= low) and (high is None or value <= high):
                return str(options["result"]["text"])
    return value


#: Grafana's field calculations the boards' transformations use, over non-null values.
FIELD_CALCS = {"lastNotNull": lambda xs: xs[-1], "max": max}


def table_rows(results: dict[str, list[Series]]) -> list[dict[str, Any]]:
    """Grafana's ``merge`` of table-format results: every series' rows, each row with the
    series' tags as columns, the refIds in order (fields a row lacks are missing, not null)."""
    rows = []
    for found in results.values():
        for s in found:
            for values in s.values:
                row = dict(zip(s.columns, values, strict=True))
                rows.append({**s.tags, **{k: v for k, v in row.items() if v is not None}})
    return rows


def transform(
    results: dict[str, list[Series]], transformations: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The transformations the boards use (merge, then groupBy, then organize's renames)."""
    ids = [t["id"] for t in transformations]
    if ids[:1] != ["merge"] or not set(ids) <= {"merge", "groupBy", "organize"}:
        raise AssertionError(f"the tests only emulate merge, groupBy, organize, not {ids}")
    rows = table_rows(results)
    for t in transformations[1:]:
        options = t["options"]
        if t["id"] == "groupBy":
            fields = options["fields"]
            keys = [f for f, o in fields.items() if o["operation"] == "groupby"]
            groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
            for row in rows:
                groups.setdefault(tuple(row.get(k) for k in keys), []).append(row)
            rows = []
            for key, members in groups.items():
                out: dict[str, Any] = dict(zip(keys, key, strict=True))
                for f, o in fields.items():
                    for calc in o["aggregations"] if o["operation"] == "aggregate" else ():
                        values = [m[f] for m in members if m.get(f) is not None]
                        out[f"{f} ({calc})"] = FIELD_CALCS[calc](values) if values else None
                rows.append(out)
        else:
            renames = options.get("renameByName", {})
            rows = [{renames.get(k, k): v for k, v in row.items()} for row in rows]
    return rows


REDUCERS = {
    "last": lambda xs: xs[-1],
    "max": max,
    "min": min,
    "sum": sum,
    "count": len,
    "mean": lambda xs: sum(xs) / len(xs),
}
COMPARE = {"gt": lambda x, t: x > t, "lt": lambda x, t: x < t}


@dataclass
class Evaluation:
    """An alert rule's outcome: firing instances by labels, and whether the query had data."""

    firing: list[dict[str, str]] = field(default_factory=list)
    normal: list[dict[str, str]] = field(default_factory=list)
    no_data: bool = False


def evaluate_rule(rule: dict[str, Any], results: dict[str, list[Series]]) -> Evaluation:
    """Reduce each series of the query (dropping non-numbers), then apply the threshold."""
    steps = {d["refId"]: d["model"] for d in rule["data"]}
    condition = steps[rule["condition"]]
    reduce = steps[condition["expression"]]
    assert reduce["type"] == "reduce"
    assert reduce["settings"]["mode"] == "dropNN"
    evaluator = condition["conditions"][0]["evaluator"]
    outcome = Evaluation()
    found = results[reduce["expression"]]
    if not any(s.numbers() for s in found):
        outcome.no_data = True
        return outcome
    for s in found:
        numbers = [v for _, v in s.points() if isinstance(v, int | float)]
        if not numbers:
            continue
        value = REDUCERS[reduce["reducer"]](numbers)
        fires = COMPARE[evaluator["type"]](value, evaluator["params"][0])
        (outcome.firing if fires else outcome.normal).append(s.tags)
    return outcome


def targets(panel: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from panel.get("targets", [])
