"""A device's latest reading (from the live state) and its time series (from InfluxDB)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.deps import EngineDep, InfluxDep, SettingsDep, StateDep
from api.kpis import KPI_MODULES, DeviceState
from api.problems import ProblemError
from api.registry import crud
from api.routers.devices import DeviceIdPath
from api.schemas.common import problem_responses
from api.schemas.readings import (
    Aggregation,
    LatestPublic,
    Point,
    SeriesPublic,
)
from api.state import CityState, clock
from smartcity import retention
from smartcity.devices import DEVICE_TYPES, DeviceType
from smartcity.devices.base import EARLIEST_TS
from smartcity.influx import InfluxReader, Row, at, duration, ident
from smartcity.storage import rollup_field

router = APIRouter(prefix="/v1/devices", tags=["readings"])

INTERVAL = r"^[1-9][0-9]{0,5}[smhd]$"
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MIN_INTERVAL_S = 10
#: One fixed query per aggregation: the function name is chosen from this table, never from
#: request text, and everything else is a bound parameter.
SERIES_QUERIES = {
    agg: f"SELECT {agg}($f) AS v FROM $m WHERE device_id = $id AND time > $from "
    "AND time <= $to GROUP BY time($i) fill(none)"
    for agg in ("mean", "max", "min", "last")
}
#: The same from a rollup policy ($rp): whole windows from $from to $to, the aggregate of
#: aggregates that equals the raw one (a mean is the sum of sums over the sum of counts).
ROLLUP_QUERIES = {
    agg: f"SELECT {expr} AS v FROM $rp.$m WHERE device_id = $id AND time >= $from "
    "AND time < $to GROUP BY time($i) fill(none)"
    for agg, expr in {
        "mean": "sum($f_sum) / sum($f_count)",
        "max": "max($f_max)",
        "min": "min($f_min)",
        "last": "last($f_last)",
    }.items()
}
LATEST_TS = datetime(2100, 1, 1, tzinfo=UTC)
ISO_DATETIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})$"


def parse_time(text: str, name: str) -> datetime:
    """A time from the query, within the years data can exist in (InfluxDB stores 1677-2262)."""
    try:
        t = datetime.fromisoformat(text)
        if EARLIEST_TS <= t < LATEST_TS:
            return t
    except ValueError:
        pass
    raise ProblemError(
        422,
        f"{name} must be a time from {EARLIEST_TS.year} to {LATEST_TS.year - 1}",
        errors=[{"loc": ["query", name], "msg": "not a valid time", "type": "value_error"}],
    )


def numeric_fields(device: type[DeviceType]) -> dict[str, str | None]:
    """The fields a series can be drawn for, with their units, from the device's model."""
    out: dict[str, str | None] = {}
    for name, info in device.reading_model.model_fields.items():
        if info.annotation in (float, int) and name != "ts":
            extra = info.json_schema_extra
            out[name] = str(extra["unit"]) if isinstance(extra, dict) and "unit" in extra else None
    return out


#: Every field some device type has a series for: the union of :func:`numeric_fields` over the
#: device types, sorted (``tests/test_registry.py`` checks they agree).
SeriesField = Literal[
    "activePower",
    "batteryLevel",
    "co",
    "current",
    "energy",
    "fillingLevel",
    "illuminanceLevel",
    "no2",
    "o3",
    "pm10",
    "pm25",
    "power",
    "ratedPower",
    "relativeHumidity",
    "seq",
    "temperature",
    "totalActiveEnergyImport",
    "voltage",
]


def _registered_type(engine: Engine, device_id: str) -> str | None:
    with Session(engine) as session:
        device = crud.get_device(session, device_id)
        return device.device_type if device else None


async def _types_of(engine: Engine, device_id: str) -> list[str]:
    """The measurements to look in: the registered type, or every type for an unknown id."""
    known = await asyncio.to_thread(_registered_type, engine, device_id)
    return [known] if known else list(DEVICE_TYPES)


def latest_public(state: CityState, last: DeviceState) -> LatestPublic:
    device = DEVICE_TYPES[last.device_type]
    extras = KPI_MODULES[device.name].latest_extras(state.parts.get(last.device_id, []))
    return LatestPublic(
        device_id=last.device_id,
        device_type=device.name,
        zone=last.zone,
        registered=last.device_id in state.registry,
        time=last.time,
        fields={k: v for k, v in last.fields.items() if v is not None},
        units={k: v for k, v in numeric_fields(device).items() if v},
        **extras,
    )


def latest_answer(state: CityState, device_id: str) -> bytes | None:
    """The device's latest reading as the JSON body of its answer, serialised on its first
    request in this state, then a dictionary lookup. (Not all devices up front: 10,000 of them
    take ~0.1 s of CPU that a refresh would hold the GIL for, away from requests.)"""
    answers: dict[str, bytes] = state.derive("latest.json", dict)
    body = answers.get(device_id)
    if body is None:
        last = state.latest_readings().get(device_id)
        if last is None:
            return None
        body = answers[device_id] = latest_public(state, last).model_dump_json().encode()
    return body


@router.get(
    "/{device_id}/latest",
    summary="A device's latest reading",
    description="From the live state, refreshed every kpi_cache_seconds (30 s by default): "
    "the same data as the catalogue's KPIs, at most that much older than InfluxDB.",
    response_model=LatestPublic,
    responses=problem_responses(404, 503),
)
async def latest(device_id: DeviceIdPath, state: StateDep) -> Response:
    body = latest_answer(state, device_id)
    if body is None:
        hours = state.settings.lookback_hours
        raise ProblemError(404, f"no reading from {device_id!r} in the last {hours:g} hours")
    return Response(body, media_type="application/json")


@router.get(
    "/{device_id}/series",
    summary="A device's time series, aggregated per interval",
    responses=problem_responses(404, 422, 503),
)
async def series(
    device_id: DeviceIdPath,
    engine: EngineDep,
    db: InfluxDep,
    settings: SettingsDep,
    field: Annotated[SeriesField, Query(description="A numeric field of the device's type.")],
    agg: Aggregation = "mean",
    interval: Annotated[str, Query(pattern=INTERVAL, description="e.g. 30s, 5m, 1h, 1d")] = "5m",
    start: Annotated[
        str | None,
        Query(pattern=ISO_DATETIME, description="ISO 8601 with offset; default end - 24 h."),
    ] = None,
    end: Annotated[
        str | None, Query(pattern=ISO_DATETIME, description="ISO 8601 with offset; default now.")
    ] = None,
) -> SeriesPublic:
    step = int(interval[:-1]) * SECONDS[interval[-1]]
    last = parse_time(end, "end") if end else clock(settings)
    first = parse_time(start, "start") if start else last - timedelta(hours=24)
    span = (last - first).total_seconds()
    problems = []
    if step < MIN_INTERVAL_S:
        problems.append(("interval", f"must be at least {MIN_INTERVAL_S}s"))
    elif step > settings.max_range_days * 86400:
        problems.append(("interval", f"must be at most {settings.max_range_days} days"))
    if span <= 0:
        problems.append(("start", "must be before end"))
    elif span > settings.max_range_days * 86400:
        problems.append(("start", f"the range may span at most {settings.max_range_days} days"))
    elif span / step > settings.max_series_points:
        problems.append(
            ("interval", f"gives over {settings.max_series_points} points; use a longer one")
        )
    if problems:
        raise ProblemError(
            422,
            "; ".join(f"{k} {m}" for k, m in problems),
            errors=[{"loc": ["query", k], "msg": m, "type": "value_error"} for k, m in problems],
        )
    types = await _types_of(engine, device_id)
    owners = [t for t in types if field in numeric_fields(DEVICE_TYPES[t])]
    if not owners:
        choices = sorted({f for t in types for f in numeric_fields(DEVICE_TYPES[t])})
        raise ProblemError(
            422,
            f"field {field!r} has no series; choose one of {', '.join(choices)}",
            errors=[{"loc": ["query", "field"], "msg": "unknown field", "type": "value_error"}],
        )
    res = retention.choose(first, last, step)
    if not all(retention.rolled_up(DEVICE_TYPES[t].measurement(), field) for t in owners):
        res = retention.RAW  # seq: no rollup
    results = await asyncio.gather(
        *(
            _series(db, t, field, agg, device_id, (first, last), step, res, clock(settings))
            for t in owners
        )
    )
    hit = next(((t, got) for t, got in zip(owners, results, strict=True) if got[0]), None)
    if hit is None:
        raise ProblemError(404, f"no {field} data from {device_id!r} between {first} and {last}")
    device_type, (rows, res) = hit
    return SeriesPublic(
        device_id=device_id,
        device_type=device_type,
        field=field,
        unit=numeric_fields(DEVICE_TYPES[device_type])[field],
        agg=agg,
        interval=interval,
        start=first,
        end=last,
        resolution=res.name,
        points=[
            Point(time=r.time, value=float(r.values["v"]))
            for r in rows
            if r.values["v"] is not None
        ],
    )


async def _series(
    db: InfluxReader,
    device_type: str,
    field: str,
    agg: str,
    device_id: str,
    span: tuple[datetime, datetime],
    step: int,
    res: retention.Resolution,
    now: datetime,
) -> tuple[list[Row], retention.Resolution]:
    """The points of one measurement: from the rollup up to its newest settled window (cut
    on a step), then from raw readings; all raw on a database without rollups."""
    m = ident(DEVICE_TYPES[device_type].measurement())
    common = {"m": m, "id": device_id, "i": duration(step)}
    rolled, raw = retention.split(res, *span, now=now, align_s=step)
    rows: list[Row] = []
    if rolled is not None:
        params = {**common, "rp": ident(res.policy), "from": at(rolled[0]), "to": at(rolled[1])}
        for a in ("sum", "count", "max", "min", "last"):
            params[f"f_{a}"] = ident(rollup_field(field, a))
        got = await retention.rollup_rows(db, ROLLUP_QUERIES[agg], params)
        if got is None:
            res, rolled, raw = retention.RAW, None, span
        else:
            rows += got
    if raw is not None:
        # a raw tail after rollups starts at the cut itself (rollup windows end before it)
        lo = raw[0] - timedelta(microseconds=1) if rolled is not None else raw[0]
        params = {**common, "f": ident(field), "from": at(lo), "to": at(raw[1])}
        rows += await db.rows(SERIES_QUERIES[agg], params)
    return rows, res
