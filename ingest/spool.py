"""A disk spool for batches InfluxDB cannot take now, drained oldest first when it returns.

While InfluxDB is away the ingester keeps at most ``--max-pending-batches`` batches in memory;
beyond that each new batch is written here and fsynced before its messages are acknowledged, so
the broker's queue does not grow without end and a crash loses nothing: the next start drains
whatever is here before anything newer.
"""

from __future__ import annotations

import os
from pathlib import Path


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.tmp"):
            stale.unlink()  # a write cut short by a crash was never acknowledged
        self.files = sorted(directory.glob("*.lp"))
        self.bytes = sum(f.stat().st_size for f in self.files)
        self.next_id = int(self.files[-1].stem) + 1 if self.files else 1

    @property
    def depth(self) -> int:
        return len(self.files)

    def has_room(self, size: int) -> bool:
        return self.bytes + size <= self.max_bytes

    def put(self, lines: list[str]) -> None:
        """Store a batch durably (write, fsync, atomic rename, fsync the folder)."""
        data = "\n".join(lines).encode()
        final = self.directory / f"{self.next_id:012d}.lp"
        tmp = final.with_suffix(".tmp")
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.rename(final)
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self.next_id += 1
        self.files.append(final)
        self.bytes += len(data)

    def oldest(self) -> tuple[Path, list[str]] | None:
        if not self.files:
            return None
        path = self.files[0]
        return path, path.read_text().split("\n")

    def remove(self, path: Path) -> None:
        self.bytes -= path.stat().st_size
        path.unlink()
        self.files.remove(path)
