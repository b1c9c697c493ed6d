"""The outbox: every reading is on disk before it is published, and leaves only on its PUBACK.

SQLite in WAL mode. Storing a reading commits with ``synchronous=FULL``, so it survives a SIGKILL
and a power cut. Deleting acknowledged rows commits with ``NORMAL`` (no fsync of its own; the
next FULL commit makes it durable): a power cut may undo a deletion, which only means the rows
are sent again and land on the same InfluxDB points, and it halves the writes to the
controller's flash and speeds a replay up several times.

Rows replay oldest first; consecutive rows of one channel travel as one telemetry (or events)
message of up to ``batch_size`` readings. The outbox is bounded: when it is full the OLDEST rows
are deleted to make room, and the persistent ``dropped`` counter says how many (a gap in ``seq``
shows which); a row dropped while already on its way to the broker leaves that count again when
its PUBACK arrives. The reading counter ``seq`` lives here too, in the same transaction as the
reading, so it continues across restarts without a gap or a repeat.
"""

from __future__ import annotations

import fcntl
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

from smartcity.contract import MAX_PAYLOAD_BYTES
from smartcity.devices import Event, Reading

Channel = Literal["telemetry", "events"]
#: Room left in a message for the envelope around the stored items.
_ENVELOPE_BYTES = 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters VALUES ('next_seq', 0), ('dropped', 0);
"""


class OutboxError(Exception):
    """The outbox file cannot be used: what is wrong, and what to do about it."""

    def __init__(self, problem: str, next_step: str) -> None:
        super().__init__(f"{problem}: {next_step}")
        self.problem = problem
        self.next_step = next_step


@dataclass(frozen=True, slots=True)
class Batch:
    """Consecutive rows of one channel: ids ``first``..``last``, each item one JSON object."""

    channel: Channel
    first: int
    last: int
    items: list[bytes]


class Outbox:
    def __init__(self, path: Path, max_items: int, *, exclusive: bool = True) -> None:
        """Open (or create) the outbox; ``exclusive`` keeps a second agent off the same file."""
        self.path = path
        self.max_items = max_items
        self._lock: TextIO | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if exclusive:
                self._lock = path.with_name(path.name + ".lock").open("a")
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.db = sqlite3.connect(path, isolation_level=None, timeout=10)
        except BlockingIOError:
            self._release()
            raise OutboxError(
                f"another agent is using the outbox {path}",
                "stop it first (systemctl stop smartcity-edge), or give this one its own --outbox",
            ) from None
        except (OSError, sqlite3.Error) as exc:
            self._release()
            raise _unusable(path, exc) from None
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA cache_size=-512")  # KiB: the agent must stay small
            self.db.executescript(_SCHEMA)
            (self.depth,) = self.db.execute("SELECT count(*) FROM outbox").fetchone()
        except sqlite3.Error as exc:
            self.close()
            raise _unusable(path, exc) from None

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # -- counters -------------------------------------------------------------------------

    def _counter(self, name: str) -> int:
        (value,) = self.db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(value)

    def _add(self, name: str, amount: int) -> None:
        self.db.execute("UPDATE counters SET value = value + ? WHERE name = ?", (amount, name))

    @property
    def dropped(self) -> int:
        """Rows deleted unsent because the outbox was full, ever."""
        return self._counter("dropped")

    @property
    def next_seq(self) -> int:
        return self._counter("next_seq")

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

    def take_seq(self) -> int:
        """Use up one sequence number outside the outbox (``smartcity edge check``'s reading)."""
        with self._durable():
            seq = self._counter("next_seq")
            self._add("next_seq", 1)
        return seq

    # -- writing and reading --------------------------------------------------------------

    def store(self, readings: list[Reading], events: list[Event]) -> int:
        """Number the readings, store them and the events in one transaction; returns drops."""
        if not readings and not events:
            return 0
        with self._durable():
            seq = self._counter("next_seq")
            rows: list[tuple[str, bytes]] = [
                ("telemetry", _json(r.model_copy(update={"seq": seq + i})))
                for i, r in enumerate(readings)
            ]
            rows += [("events", _json(e)) for e in events]
            self.db.executemany("INSERT INTO outbox (channel, body) VALUES (?, ?)", rows)
            self._add("next_seq", len(readings))
            self.depth += len(rows)
            return self._enforce_bound()

    def _enforce_bound(self) -> int:
        excess = self.depth - self.max_items
        if excess <= 0:
            return 0
        cur = self.db.execute(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)", (excess,)
        )
        self._add("dropped", cur.rowcount)
        self.depth -= cur.rowcount
        return cur.rowcount

    def batch(self, after: int, max_items: int) -> Batch | None:
        """The oldest rows after id ``after``: one channel, at most ``max_items``, under 256 KiB."""
        rows = self.db.execute(
            "SELECT id, channel, body FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
            (after, max_items),
        ).fetchall()
        if not rows:
            return None
        channel = rows[0][1]
        items: list[bytes] = []
        size = _ENVELOPE_BYTES
        last = rows[0][0]
        for row_id, row_channel, body in rows:
            size += len(body) + 1
            if row_channel != channel or (items and size > MAX_PAYLOAD_BYTES):
                break
            items.append(body)
            last = row_id
        return Batch(channel, rows[0][0], last, items)

    def again(self, batch: Batch) -> Batch | None:
        """The rows of ``batch`` still here, to send it once more (None if all were dropped)."""
        rows = self.db.execute(
            "SELECT body FROM outbox WHERE id BETWEEN ? AND ? ORDER BY id",
            (batch.first, batch.last),
        ).fetchall()
        return Batch(batch.channel, batch.first, batch.last, [r[0] for r in rows]) if rows else None

    def remove(self, batch: Batch) -> int:
        """Delete a batch the broker acknowledged; returns how many rows were still here.

        Rows of the batch that are gone were dropped while in flight, yet they were delivered:
        they leave the ``dropped`` count.
        """
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            cur = self.db.execute(
                "DELETE FROM outbox WHERE id BETWEEN ? AND ?", (batch.first, batch.last)
            )
            if cur.rowcount < len(batch.items):
                self._add("dropped", cur.rowcount - len(batch.items))
        self.depth -= cur.rowcount
        return cur.rowcount

    def close(self) -> None:
        self.db.close()
        self._release()


def _unusable(path: Path, exc: Exception) -> OutboxError:
    return OutboxError(
        f"cannot open the outbox {path} ({exc})",
        "make sure the agent's user may write in that folder, or set --outbox "
        "(outbox in the [edge] section)",
    )


def _json(model: Reading | Event) -> bytes:
    return model.model_dump_json(exclude_none=True).encode()
