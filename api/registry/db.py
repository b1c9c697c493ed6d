"""Engine and sessions for the registry database."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from api.registry.models import Base
from smartcity.settings import SettingsError


def make_engine(url: str, create: bool = True) -> Engine:
    """An engine for ``url``; creates the SQLite folder and the tables when ``create``.

    Tables are created if missing (``create_all`` never alters existing ones): the schema is
    small and additive so far; a change that is not additive will need a migration tool.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise SettingsError(f"registry URL {url!r} is not a database URL: {exc}") from None
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(parsed, pool_pre_ping=not sqlite)
    except (ModuleNotFoundError, NoSuchModuleError) as exc:
        raise SettingsError(
            f"registry URL {parsed.render_as_string()}: its database driver is missing or "
            f"unknown ({exc}); for PostgreSQL pip install 'psycopg[binary]' and use "
            "postgresql+psycopg://"
        ) from None
    if sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    if create:
        Base.metadata.create_all(engine)
    return engine


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    # WAL lets the ingester read zones while the API writes; busy_timeout waits for a writer
    # instead of failing with "database is locked".
    cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()
