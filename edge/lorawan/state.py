"""What the bridge keeps on disk: join epochs, each device's application, downlinks in flight.

A LoRaWAN frame counter starts again at 0 after every join, so ``seq`` is ``epoch * 2**32 +
fCnt`` with an epoch per device that a join event bumps. Each epoch is stored with the time of
its join, and an uplink takes the epoch that was current at *its* time: an uplink redelivered
after a later join (same ``deduplicationId``, same time) gets the same ``seq`` again, so it lands
on the same InfluxDB point. SQLite, committed on each change: epochs must survive a restart, or
the next uplinks would overwrite the earlier epoch's points.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

#: Frame counters are 32-bit; an epoch takes the bits above them (seq stays below 2**53).
FCNT_BITS = 32

_SCHEMA = """
CREATE TABLE IF NOT EXISTS epochs (dev_eui TEXT, epoch INTEGER, since_ms INTEGER,
                                   PRIMARY KEY (dev_eui, epoch));
CREATE TABLE IF NOT EXISTS applications (dev_eui TEXT PRIMARY KEY, application_id TEXT);
CREATE TABLE IF NOT EXISTS downlinks (queue_id TEXT PRIMARY KEY, device_type TEXT,
                                      device_id TEXT, command_id TEXT);
"""


class State:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")  # one fsync per change, readers never wait
        self.db.executescript(_SCHEMA)
        self._heard: dict[str, str] = {}

    def seq(self, dev_eui: str, at_ms: int, fcnt: int) -> int:
        """The reading counter of an uplink: its device's epoch at ``at_ms``, then ``fCnt``."""
        row = self.db.execute(
            "SELECT max(epoch) FROM epochs WHERE dev_eui = ? AND since_ms <= ?", (dev_eui, at_ms)
        ).fetchone()
        return ((row[0] or 0) << FCNT_BITS) + fcnt

    def joined(self, dev_eui: str, at_ms: int) -> int:
        """A new epoch from ``at_ms`` on (a redelivered join changes nothing); returns it."""
        seen = self.db.execute(
            "SELECT epoch FROM epochs WHERE dev_eui = ? AND since_ms = ?", (dev_eui, at_ms)
        ).fetchone()
        if seen is not None:
            return int(seen[0])
        (last,) = self.db.execute(
            "SELECT coalesce(max(epoch), 0) FROM epochs WHERE dev_eui = ?", (dev_eui,)
        ).fetchone()
        self.db.execute("INSERT INTO epochs VALUES (?, ?, ?)", (dev_eui, last + 1, at_ms))
        return int(last) + 1

    def heard(self, dev_eui: str, application_id: str) -> None:
        """Remember the device's application (written only when it changes)."""
        if self._heard.get(dev_eui) == application_id:
            return
        self._heard[dev_eui] = application_id
        self.db.execute(
            "INSERT OR REPLACE INTO applications VALUES (?, ?)", (dev_eui, application_id)
        )

    def application(self, dev_eui: str) -> str | None:
        row = self.db.execute(
            "SELECT application_id FROM applications WHERE dev_eui = ?", (dev_eui,)
        ).fetchone()
        return None if row is None else str(row[0])

    def sent(self, queue_id: str, device_type: str, device_id: str, command_id: str) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO downlinks VALUES (?, ?, ?, ?)",
            (queue_id, device_type, device_id, command_id),
        )

    def settled(self, queue_id: str) -> tuple[str, str, str] | None:
        """The device and command of a downlink ChirpStack reports on, forgotten from now on."""
        row = self.db.execute(
            "SELECT device_type, device_id, command_id FROM downlinks WHERE queue_id = ?",
            (queue_id,),
        ).fetchone()
        if row is None:
            return None
        self.db.execute("DELETE FROM downlinks WHERE queue_id = ?", (queue_id,))
        return str(row[0]), str(row[1]), str(row[2])

    def close(self) -> None:
        self.db.close()
