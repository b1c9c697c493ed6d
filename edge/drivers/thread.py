"""The driver's own thread: every call to a driver runs there, one at a time, in order.

The agent's thread runs paho's network loop; if a driver's ``read`` or ``apply`` ran there, a
device that answers slowly (a Modbus timeout, an OCPP charger busy for seconds) would stop
keepalives and PUBACKs and the broker would drop the agent. Here the agent submits a call and
picks up its result when it is done, while its loop carries on. A call that never returns
cannot be killed: the agent reports it and takes no new reading until it does; the thread is a
daemon, so a stuck device never keeps the agent from stopping.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from edge.drivers.base import Driver

T = TypeVar("T")


class DriverThread:
    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.started = False  # touched by the driver thread only
        self._calls: queue.SimpleQueue[
            tuple[Call[Any], Callable[..., Any], tuple[object, ...]] | None
        ] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._run, name=f"driver-{driver.device_id}", daemon=True
        )
        self._thread.start()

    def submit(self, fn: Callable[..., T], *args: object) -> Call[T]:
        """Run ``fn(*args)`` on the driver thread, after ``driver.start()`` has succeeded."""
        call: Call[T] = Call()
        self._calls.put((call, fn, args))
        return call

    def close(self, timeout: float) -> bool:
        """Close the driver on its thread; False if it did not finish within ``timeout``."""
        self._calls.put((Call(), self.driver.close, ()))
        self._calls.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while (item := self._calls.get()) is not None:
            call, fn, args = item
            call.set_running_or_notify_cancel()
            call.began = time.monotonic()
            try:
                # ==, not is: each attribute lookup makes a new bound method
                if not self.started and fn != self.driver.close:
                    self.driver.start()
                    self.started = True
                call.set_result(fn(*args))
            except BaseException as exc:  # handed to the agent, which reports it
                call.set_exception(exc)


class Call(Future[T]):
    """A submitted driver call; ``began`` is when the driver thread started it (or None)."""

    began: float | None = None
    reported = False  # the agent has said it is overdue
