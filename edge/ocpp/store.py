"""The gateway's state on disk: the outbox of every charger, reading counters, transactions.

One SQLite file (WAL), the same durability as the edge agent's outbox (``edge.outbox``): a
message is committed with ``synchronous=FULL`` before the charger gets its answer, and leaves
only on its PUBACK, so neither a broker outage nor a restart loses anything. Unlike an agent's
outbox it holds many devices, and whole payloads for status, health and command results beside
the readings and events that replay as batches. Each charger's reading counter ``seq`` and the
transaction ids (unique, never reused) are counted here, in the transaction that stores what
uses them, so they continue across restarts without a gap or a repeat.

The asyncio side (the OCPP server) writes through one :class:`Store`, the MQTT publisher thread
reads and deletes through another on the same file.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from smartcity.contract import MAX_PAYLOAD_BYTES

#: Channels whose rows are single items joined into one message per batch.
BATCHED = ("telemetry", "events")
_ENVELOPE_BYTES = 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    zone TEXT,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS seq (device_id TEXT PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters VALUES ('next_transaction', 1), ('dropped', 0);
CREATE TABLE IF NOT EXISTS transactions (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    connector_id INTEGER NOT NULL,
    meter_start INTEGER NOT NULL,
    started TEXT NOT NULL,
    id_tag_hash TEXT NOT NULL,
    stopped TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS transactions_start
    ON transactions (device_id, connector_id, started);
CREATE TABLE IF NOT EXISTS chargers (
    device_id TEXT PRIMARY KEY,
    state TEXT NOT NULL DEFAULT '{}',
    connected INTEGER NOT NULL DEFAULT 0,
    last_seen REAL,
    wrong_passwords INTEGER NOT NULL DEFAULT 0
);
"""


#: What one device said: (device id, zone, (channel, body) rows, readings to number).
Entry = tuple[str, str | None, list[tuple[str, bytes]], list[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Batch:
    """Rows ``first``..``last`` of one device and channel: one MQTT message."""

    device_id: str
    channel: str
    zone: str | None
    first: int
    last: int
    items: list[bytes]


@dataclass(frozen=True, slots=True)
class Transaction:
    id: int
    device_id: str
    connector_id: int
    meter_start: int
    started: datetime
    id_tag_hash: str


class Store:
    def __init__(self, path: Path, max_items: int = 1_000_000) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_items = max_items
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _durable(self) -> Iterator[None]:
        """One write transaction that is on disk (fsynced) when it returns."""
        self.db.execute("PRAGMA synchronous=FULL")
        try:
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                yield
        finally:
            self.db.execute("PRAGMA synchronous=NORMAL")

    def _counter(self, name: str) -> int:
        (value,) = self.db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(value)

    # -- the outbox ---------------------------------------------------------------------------

    def put(
        self,
        device_id: str,
        zone: str | None,
        rows: list[tuple[str, bytes]],
        readings: list[dict[str, Any]] | None = None,
    ) -> int:
        """Store ``(channel, body)`` rows; ``readings`` (JSON-ready dicts) are numbered with
        the device's next ``seq`` values and stored as telemetry first. Returns rows dropped
        because the outbox was full."""
        return self.put_many([(device_id, zone, rows, readings or [])])

    def put_many(self, entries: list[Entry]) -> int:
        """:meth:`put` for many devices in one durable transaction (one fsync for all: the
        gateway gathers what its chargers said meanwhile, then answers them)."""
        with self._durable():
            for device_id, zone, rows, readings in entries:
                if readings:
                    got = self.db.execute(
                        "SELECT next FROM seq WHERE device_id = ?", (device_id,)
                    ).fetchone()
                    seq = got[0] if got else 0
                    numbered = [
                        ("telemetry", json.dumps({**r, "seq": seq + i}).encode())
                        for i, r in enumerate(readings)
                    ]
                    rows = numbered + rows
                    after = seq + len(readings)
                    self.db.execute(
                        "INSERT INTO seq VALUES (?, ?) "
                        "ON CONFLICT (device_id) DO UPDATE SET next = ?",
                        (device_id, after, after),
                    )
                self.db.executemany(
                    "INSERT INTO outbox (device_id, channel, zone, body) VALUES (?, ?, ?, ?)",
                    [(device_id, ch, zone, body) for ch, body in rows],
                )
            return self._enforce_bound()

    def _enforce_bound(self) -> int:
        excess = self.depth - self.max_items
        if excess <= 0:
            return 0
        cur = self.db.execute(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)", (excess,)
        )
        self.db.execute(
            "UPDATE counters SET value = value + ? WHERE name = 'dropped'", (cur.rowcount,)
        )
        return cur.rowcount

    @property
    def depth(self) -> int:
        (n,) = self.db.execute("SELECT count(*) FROM outbox").fetchone()
        return int(n)

    @property
    def dropped(self) -> int:
        return self._counter("dropped")

    def next_seq(self, device_id: str) -> int:
        got = self.db.execute("SELECT next FROM seq WHERE device_id = ?", (device_id,)).fetchone()
        return int(got[0]) if got else 0

    def batch(self, after: int, max_items: int) -> Batch | None:
        """The oldest rows after id ``after`` that make one message: consecutive telemetry (or
        events) of one device, under 256 KiB; any other channel one row alone."""
        rows = self.db.execute(
            "SELECT id, device_id, channel, zone, body FROM outbox WHERE id > ? ORDER BY id "
            "LIMIT ?",
            (after, max_items),
        ).fetchall()
        if not rows:
            return None
        first_id, device_id, channel, zone, body = rows[0]
        if channel not in BATCHED:
            return Batch(device_id, channel, zone, first_id, first_id, [body])
        items: list[bytes] = []
        size = _ENVELOPE_BYTES
        last = first_id
        for row_id, row_device, row_channel, _, row_body in rows:
            size += len(row_body) + 1
            if (row_device, row_channel) != (device_id, channel) or (
                items and size > MAX_PAYLOAD_BYTES
            ):
                break
            items.append(row_body)
            last = row_id
        return Batch(device_id, channel, zone, first_id, last, items)

    def remove(self, batch: Batch) -> None:
        with self.db:
            self.db.execute(
                "DELETE FROM outbox WHERE id BETWEEN ? AND ?", (batch.first, batch.last)
            )

    # -- transactions -------------------------------------------------------------------------

    def start_transaction(
        self, device_id: str, connector_id: int, meter_start: int, started: datetime, tag: str
    ) -> tuple[Transaction, bool]:
        """A new transaction id, or the one given before for the same start (a charger that
        sends its StartTransaction again after a lost answer); True if new."""
        with self._durable():
            row = self.db.execute(
                "SELECT id FROM transactions WHERE device_id = ? AND connector_id = ? AND "
                "started = ?",
                (device_id, connector_id, started.isoformat()),
            ).fetchone()
            if row is not None:
                found = self.transaction(int(row[0]))
                assert found is not None
                return found, False
            tx_id = self._counter("next_transaction")
            self.db.execute("UPDATE counters SET value = value + 1 WHERE name = 'next_transaction'")
            self.db.execute(
                "INSERT INTO transactions VALUES (?, ?, ?, ?, ?, ?, NULL)",
                (tx_id, device_id, connector_id, meter_start, started.isoformat(), tag),
            )
        return Transaction(tx_id, device_id, connector_id, meter_start, started, tag), True

    def transaction(self, tx_id: int) -> Transaction | None:
        row = self.db.execute(
            "SELECT id, device_id, connector_id, meter_start, started, id_tag_hash "
            "FROM transactions WHERE id = ?",
            (tx_id,),
        ).fetchone()
        if row is None:
            return None
        return Transaction(row[0], row[1], row[2], row[3], datetime.fromisoformat(row[4]), row[5])

    def stop_transaction(self, tx_id: int, stopped: datetime) -> bool:
        """Mark it stopped; False if it was stopped already (a StopTransaction sent again)."""
        with self._durable():
            cur = self.db.execute(
                "UPDATE transactions SET stopped = ? WHERE id = ? AND stopped IS NULL",
                (stopped.isoformat(), tx_id),
            )
        return cur.rowcount == 1

    # -- chargers -----------------------------------------------------------------------------

    def charger_state(self, device_id: str) -> dict[str, Any]:
        row = self.db.execute(
            "SELECT state FROM chargers WHERE device_id = ?", (device_id,)
        ).fetchone()
        state: dict[str, Any] = json.loads(row[0]) if row else {}
        return state

    def save_charger(
        self, device_id: str, state: dict[str, Any], connected: bool, last_seen: float
    ) -> None:
        with self.db:
            self.db.execute(
                "INSERT INTO chargers (device_id, state, connected, last_seen) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET state = excluded.state,"
                " connected = excluded.connected, last_seen = excluded.last_seen",
                (device_id, json.dumps(state), int(connected), last_seen),
            )

    def count_wrong_password(self, device_id: str) -> int:
        """One more refused login with a wrong password; returns the charger's total."""
        with self.db:
            self.db.execute(
                "INSERT INTO chargers (device_id, wrong_passwords) VALUES (?, 1) "
                "ON CONFLICT (device_id) DO UPDATE SET wrong_passwords = wrong_passwords + 1",
                (device_id,),
            )
            (n,) = self.db.execute(
                "SELECT wrong_passwords FROM chargers WHERE device_id = ?", (device_id,)
            ).fetchone()
        return int(n)

    def charger_row(self, device_id: str) -> tuple[bool, float | None, int] | None:
        """(connected, last seen as a UNIX time, wrong passwords) of a charger seen before."""
        row = self.db.execute(
            "SELECT connected, last_seen, wrong_passwords FROM chargers WHERE device_id = ?",
            (device_id,),
        ).fetchone()
        return None if row is None else (bool(row[0]), row[1], int(row[2]))

    def mark_all_disconnected(self) -> None:
        with self.db:
            self.db.execute("UPDATE chargers SET connected = 0")
