"""Progress for long work: a live line on a terminal, a log line now and then otherwise."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

log = logging.getLogger("smartcity.progress")


class Progress:
    def __init__(self, describe: Callable[[], str], enabled: bool = True) -> None:
        self.describe = describe
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.every = 0.5 if self.tty else 10.0
        self.next_at = time.monotonic() + self.every

    def tick(self) -> None:
        if not self.enabled or time.monotonic() < self.next_at:
            return
        self.next_at = time.monotonic() + self.every
        self.show()

    def show(self) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K" + self.describe())
            sys.stderr.flush()
        else:
            log.info(self.describe())

    def done(self) -> None:
        if not self.enabled:
            return
        self.show()
        if self.tty:
            sys.stderr.write("\n")
