"""Engine and sessions for the registry database."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.pool import ConnectionPoolEntry

from smartcity.registry.models import Base
from smartcity.settings import SettingsError


def make_engine(url: str, create: bool = True) -> Engine:
    """An engine for ``url``; creates the SQLite folder and the tables when ``create``.

    Tables are created if missing, and so are nullable columns a newer version added (e.g.
    ``devices.threshold``), since ``create_all`` never alters an existing table: the schema is
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
        add_missing_columns(engine)
    return engine


def add_missing_columns(engine: Engine) -> None:
    """``ALTER TABLE ... ADD COLUMN`` for each nullable column the models have and a table made
    by an older version lacks (portable SQL; names from our models, quoted by the dialect)."""
    inspector = inspect(engine)
    quote = engine.dialect.identifier_preparer.quote
    for table in Base.metadata.sorted_tables:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if not column.nullable:
                raise SettingsError(
                    f"registry table {table.name} lacks the required column {column.name}: "
                    "this version needs a migration of the registry database"
                )
            kind = column.type.compile(dialect=engine.dialect)
            with engine.begin() as conn:
                conn.execute(
                    text(f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(column.name)} {kind}")
                )


def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # WAL lets the ingester read zones while the API writes; busy_timeout waits for a writer
    # instead of failing with "database is locked".
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()
