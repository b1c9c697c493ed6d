"""``smartcity storage``: InfluxDB retention policies and rollups (``smartcity.retention``).

``init`` is idempotent and keeps every point: run it on a new or an existing database, as
often as wanted (``smartcity up`` and docker-compose run it before the ingester starts).
``rollup`` recomputes rollups over a range by hand, e.g. after importing data by other means
than the ingester (which marks late windows itself).
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import datetime
from typing import Any

from smartcity.errors import UserError
from smartcity.retention import RetentionSettings
from smartcity.settings import add_arguments, load


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "storage",
        parents=[common],
        help="InfluxDB retention policies and rollups: init, rollup",
        description="Raw readings are kept --raw-retention (90d), hourly and daily rollups "
        "(mean, min, max, last, count, sum per field and device; spreads of counters; counts of "
        "events) as long as --hourly-retention / --daily-retention (forever). See "
        "docs/operations.md#retention-and-rollups.",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    init = actions.add_parser(
        "init",
        parents=[common],
        help="create or update policies and continuous queries (idempotent, keeps all data)",
        description="Create the rollup policies and continuous queries and set the raw "
        "retention, on a new or existing database. On a database without rollups yet, the "
        "history it holds is rolled up first, before the raw retention is shortened.",
    )
    add_arguments(init, RetentionSettings)
    init.set_defaults(func=run_init)
    rollup = actions.add_parser(
        "rollup",
        parents=[common],
        help="recompute rollups over a time range, then any late windows marked pending",
        description="Recompute the hourly and daily rollups between --start and --end "
        "(default: all raw data), then the windows the ingester marked as late.",
    )
    add_arguments(rollup, RetentionSettings)
    rollup.add_argument("--start", help="ISO 8601 time with offset (default: the first reading)")
    rollup.add_argument("--end", help="ISO 8601 time with offset (default: the last reading)")
    rollup.set_defaults(func=run_rollup)


def init_storage(settings: RetentionSettings) -> str:
    """Run ``storage init``; returns its one-line summary (``smartcity up`` logs it)."""
    from smartcity.influx import InfluxUnavailable, InfluxWriter
    from smartcity.retention import RetentionError, init

    async def go() -> str:
        influx = InfluxWriter(settings, timeout=600)
        attempts = 0

        def keep_trying() -> bool:
            nonlocal attempts
            attempts += 1
            return attempts < 20

        try:
            await influx.ensure_database(keep_trying)
            return (await init(influx, settings)).summary()
        finally:
            await influx.aclose()

    try:
        return asyncio.run(go())
    except (InfluxUnavailable, RetentionError) as exc:
        raise UserError(
            f"{exc}; check that InfluxDB runs at {settings.influx_url} (--influx-url)"
        ) from None


def run_init(args: argparse.Namespace) -> int:
    settings = load(RetentionSettings, args)
    print(f"storage init on {settings.influx_db}: {init_storage(settings)}")
    return 0


def _epoch(text: str | None, name: str) -> int | None:
    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"--{name} {text!r} is not an ISO 8601 time") from None
    if t.tzinfo is None:
        raise UserError(f"--{name} needs an offset, e.g. {text}+00:00")
    return int(t.timestamp())


def run_rollup(args: argparse.Namespace) -> int:
    settings = load(RetentionSettings, args)
    start, end = _epoch(args.start, "start"), _epoch(args.end, "end")
    from smartcity.influx import InfluxWriter
    from smartcity.retention import (
        ROLLUPS,
        RetentionError,
        catch_up,
        policies,
        roll_up_history,
    )

    async def go() -> tuple[int, int]:
        influx = InfluxWriter(settings, timeout=600)
        try:
            have = await policies(influx)
            if any(r.policy not in have for r in ROLLUPS):
                raise UserError("no rollup policies yet: run smartcity storage init first")
            return await roll_up_history(influx, start, end), await catch_up(influx, 0)
        finally:
            await influx.aclose()

    try:
        runs, late = asyncio.run(go())
    except RetentionError as exc:
        raise UserError(str(exc)) from None
    print(f"rollups recomputed: {runs} queries; late windows: {late} markers")
    return 0
