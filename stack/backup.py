"""``smartcity backup DIR`` and ``smartcity restore DIR``: InfluxDB and the registry together.

A backup folder holds:

* ``influxdb/``: InfluxDB's portable backup (``influxd backup -portable``) of the database,
  its retention policies and continuous queries included;
* ``registry.sqlite`` (an SQLite online backup, consistent while the API writes) or
  ``registry.sql`` (``pg_dump``) for a PostgreSQL registry;
* ``manifest.json``: what was saved, when, and how many points per measurement and policy,
  devices, API keys and audit entries it holds (points counted just before the backup, which
  therefore holds at least that many). ``restore`` checks the restored servers against it
  and says what is missing; it also recreates the rollups' continuous queries, which
  InfluxDB's backup does not carry.

Consistency: InfluxDB is saved first, the registry after it, so every device, key and audit
entry a stored reading or command refers to is in the registry copy (the registry may be a
few seconds newer, never older).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import Field
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from smartcity import __version__
from smartcity.errors import UserError
from smartcity.settings import InfluxSettings, add_arguments, load

MANIFEST = "manifest.json"
INFLUX_DIR = "influxdb"
SQLITE_FILE = "registry.sqlite"
PG_FILE = "registry.sql"


class BackupSettings(InfluxSettings):
    section = "backup"

    influx_rpc: str = Field(
        "127.0.0.1:8088",
        description="InfluxDB's backup/restore RPC address (bind-address in influxdb.conf; "
        "smartcity up: 8088, or the port its banner names). Keep it on loopback or a private "
        "network: it has no authentication.",
    )
    registry_url: str = Field(
        "sqlite:///var/registry.db", description="The device registry database (SQLAlchemy URL)."
    )


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    for name, what, func_ in (
        ("backup", "save InfluxDB and the registry into DIR, with a manifest", run_backup),
        ("restore", "restore a backup DIR into fresh InfluxDB and registry databases", run_restore),
    ):
        p = sub.add_parser(
            name, parents=[common], help=what, description=f"{what[0].upper()}{what[1:]}. "
            "See docs/operations.md#backups.",
        )  # fmt: skip
        p.add_argument("dir", metavar="DIR", type=Path)
        add_arguments(p, BackupSettings)
        p.set_defaults(func=func_)


def _influxd() -> str:
    from stack.servers import find_binary

    return find_binary("influxd")


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise UserError(f"{what} failed ({done.returncode}): {' | '.join(tail)}")


# -- counting ------------------------------------------------------------------------------------


async def _influx_counts(settings: InfluxSettings) -> dict[str, dict[str, int]]:
    """Points per measurement in each retention policy (the largest field count of each)."""
    from smartcity.influx import InfluxWriter
    from smartcity.retention import policies, q, statement

    influx = InfluxWriter(settings, timeout=600)
    try:
        out: dict[str, dict[str, int]] = {}
        for rp in sorted(await policies(influx)):
            result = await statement(influx, f"SELECT count(*) FROM {q(rp)}./.*/")
            counts = {
                s["name"]: max(int(v) for v in s["values"][0][1:] if v is not None)
                for s in result.get("series", [])
            }
            if counts:
                out[rp] = counts
        return out
    finally:
        await influx.aclose()


def _registry_counts(url: str) -> dict[str, int]:
    from smartcity.registry.db import make_engine
    from smartcity.registry.models import ApiKey, AuditEntry, Device

    engine = make_engine(url, create=False)
    try:
        with Session(engine) as session:
            return {
                "devices": session.scalar(select(func.count()).select_from(Device)) or 0,
                "api_keys": session.scalar(select(func.count()).select_from(ApiKey)) or 0,
                "audit_entries": session.scalar(select(func.count()).select_from(AuditEntry)) or 0,
            }
    finally:
        engine.dispose()


# -- backup --------------------------------------------------------------------------------------


def backup(settings: BackupSettings, target: Path) -> dict[str, Any]:
    """Write a backup into ``target`` (new or empty); returns the manifest."""
    if target.exists() and any(target.iterdir()):
        raise UserError(f"{target} is not empty: give a new folder per backup")
    target.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    clock = time.monotonic()
    # counted first: the backup taken after holds at least these (the ingester may add more)
    points = asyncio.run(_influx_counts(settings))
    _run(
        [_influxd(), "backup", "-portable", "-database", settings.influx_db,
         "-host", settings.influx_rpc, str(target / INFLUX_DIR)],
        f"influxd backup from {settings.influx_rpc}",
    )  # fmt: skip
    registry = _backup_registry(settings.registry_url, target)
    manifest = {
        "format": 1,
        "smartcity_version": __version__,
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "seconds": round(time.monotonic() - clock, 1),
        "influxdb": {"database": settings.influx_db, "dir": INFLUX_DIR, "points": points},
        "registry": registry,
    }
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _backup_registry(url: str, target: Path) -> dict[str, Any]:
    parsed = make_url(url)
    kind = parsed.get_backend_name()
    if kind == "sqlite":
        if not parsed.database or not Path(parsed.database).exists():
            raise UserError(f"registry {url} not found (--registry-url)")
        source = sqlite3.connect(parsed.database)
        dest = sqlite3.connect(target / SQLITE_FILE)
        try:
            source.backup(dest)  # SQLite's online backup: a consistent copy while others write
        finally:
            dest.close()
            source.close()
        file = SQLITE_FILE
        counts = _registry_counts(f"sqlite:///{target / SQLITE_FILE}")  # the copy's own
    elif kind == "postgresql":
        counts = _registry_counts(url)  # before the dump, which holds at least these
        _run(
            [_pg_tool("pg_dump"), "--no-owner", "--no-privileges", "--file",
             str(target / PG_FILE), _libpq(url)],
            "pg_dump of the registry",
        )  # fmt: skip
        file = PG_FILE
    else:
        raise UserError(f"cannot back up a {kind} registry: use SQLite or PostgreSQL")
    return {"kind": kind, "file": file, "counts": counts}


def _libpq(url: str) -> str:
    """A SQLAlchemy URL as libpq understands it (no ``+driver``)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _pg_tool(name: str) -> str:
    from stack.servers import find_binary

    return find_binary(name)


# -- restore -------------------------------------------------------------------------------------


def restore(settings: BackupSettings, source: Path) -> list[str]:
    """Restore ``source`` into a server without the database and an empty registry; returns
    the differences from the manifest (none when everything is back)."""
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{source} holds no readable {MANIFEST}: not a smartcity backup") from exc
    _restore_registry(manifest["registry"], settings.registry_url, source)
    _run(
        [_influxd(), "restore", "-portable", "-db", manifest["influxdb"]["database"],
         "-newdb", settings.influx_db, "-host", settings.influx_rpc,
         str(source / manifest["influxdb"]["dir"])],
        f"influxd restore to {settings.influx_rpc} (the database must not exist there yet)",
    )  # fmt: skip
    asyncio.run(_recreate_queries(settings))
    return check(settings, manifest)


async def _recreate_queries(settings: InfluxSettings) -> None:
    from smartcity.influx import InfluxWriter
    from smartcity.retention import create_queries

    influx = InfluxWriter(settings, timeout=60)
    try:
        await create_queries(influx)
    finally:
        await influx.aclose()


def check(settings: BackupSettings, manifest: dict[str, Any]) -> list[str]:
    """What the servers lack compared with the manifest's counts (taken before the backup, so
    a restored server holds at least as many)."""
    problems = []
    points = asyncio.run(_influx_counts(settings))
    for rp, counts in manifest["influxdb"]["points"].items():
        for m, n in counts.items():
            got = points.get(rp, {}).get(m, 0)
            if got < n:
                problems.append(f"{rp}.{m}: {got} points, backup had {n}")
    registry = _registry_counts(settings.registry_url)
    for name, n in manifest["registry"]["counts"].items():
        if registry.get(name, 0) < n:
            problems.append(f"registry {name}: {registry.get(name)}, backup had {n}")
    return problems


def _restore_registry(saved: dict[str, Any], url: str, source: Path) -> None:
    parsed = make_url(url)
    kind = parsed.get_backend_name()
    if kind != saved["kind"]:
        raise UserError(f"the backup holds a {saved['kind']} registry; --registry-url is {kind}")
    if kind == "sqlite":
        path = Path(parsed.database or "")
        if path.exists() and path.stat().st_size:
            raise UserError(f"registry {path} exists: restore into a new path (or move it away)")
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / saved["file"], path)
    else:
        _run(
            [_pg_tool("psql"), "--quiet", "--set", "ON_ERROR_STOP=1", "--single-transaction",
             "--file", str(source / saved["file"]), _libpq(url)],
            "psql restore of the registry (the database must be empty)",
        )  # fmt: skip


def run_backup(args: argparse.Namespace) -> int:
    settings = load(BackupSettings, args)
    manifest = backup(settings, args.dir)
    total = sum(n for counts in manifest["influxdb"]["points"].values() for n in counts.values())
    print(
        f"backup in {args.dir}: {total} points, {manifest['registry']['counts']} "
        f"({manifest['seconds']} s); manifest {args.dir / MANIFEST}"
    )
    return 0


def run_restore(args: argparse.Namespace) -> int:
    settings = load(BackupSettings, args)
    problems = restore(settings, args.dir)
    if problems:
        print("restored, but differs from the manifest:\n  " + "\n  ".join(problems))
        return 1
    print(f"restored {args.dir}: every point, device, key and audit entry counted back")
    return 0
