"""A thin async writer for InfluxDB's v1 HTTP API (``/write``, ``/query``).

InfluxDB 1.x serves that API natively and 2.x/3.x through their v1-compatibility endpoints, so
this is the one storage contract. Responses are sorted by what to do next: 204 done; 400/413
split the batch to isolate the lines InfluxDB refuses; 429/5xx/network errors wait and retry
(as long as a ``Retry-After`` asks, else a jittered exponential backoff).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from smartcity.influx.errors import InfluxUnavailable
from smartcity.settings import InfluxSettings

log = logging.getLogger("smartcity.influx")


@dataclass(frozen=True, slots=True)
class Rejected:
    """A line InfluxDB refused on its own (400), with InfluxDB's reason."""

    line: str
    reason: str


class InfluxWriter:
    def __init__(self, settings: InfluxSettings, timeout: float = 30.0) -> None:
        self.settings = settings
        auth = (
            (settings.influx_user, settings.influx_password or "") if settings.influx_user else None
        )
        self.client = httpx.AsyncClient(base_url=settings.influx_url, timeout=timeout, auth=auth)
        self.retries = 0
        #: True from a failed attempt until the next accepted one: InfluxDB is away, not slow.
        self.failing = False
        self.backoff_initial = 0.2
        self.backoff_max = 10.0

    async def aclose(self) -> None:
        await self.client.aclose()

    async def ping(self) -> bool:
        """Whether InfluxDB answers its ``/ping`` within 3 s (no retry: a check asks once)."""
        try:
            resp = await self.client.get("/ping", timeout=3)
        except httpx.TransportError:
            return False
        return resp.status_code == 204

    async def query(
        self, q: str, params: Mapping[str, object] | None = None, epoch: str | None = None
    ) -> dict[str, object]:
        """Run InfluxQL; values go in ``params`` (bound by InfluxDB), never into ``q``.

        A param may be a typed dict such as ``{"identifier": "activePower"}`` or
        ``{"duration": "5m"}``; ``epoch`` ("ms", "ns"...) returns times as integers.
        """
        body: dict[str, object] = json.loads(await self.query_bytes(q, params, epoch))
        return body

    async def query_bytes(
        self, q: str, params: Mapping[str, object] | None = None, epoch: str | None = None
    ) -> bytes:
        """``query``'s answer as InfluxDB sent it, for callers that decode it elsewhere."""
        data = {"q": q, "db": self.settings.influx_db}
        if params:
            data["params"] = json.dumps(params)
        if epoch:
            data["epoch"] = epoch
        resp = await self.client.post("/query", data=data)
        resp.raise_for_status()
        return resp.content

    async def ensure_database(self, keep_trying: Callable[[], bool] = lambda: True) -> None:
        """Create the database if missing (idempotent), waiting for InfluxDB to come up."""
        name = self.settings.influx_db.replace("\\", "\\\\").replace('"', '\\"')
        await self._retrying(
            lambda: self.client.post("/query", data={"q": f'CREATE DATABASE "{name}"'}),
            keep_trying,
            "create database",
        )

    async def write(
        self, lines: Sequence[str], keep_trying: Callable[[], bool] = lambda: True
    ) -> list[Rejected]:
        """Write ``lines``; returns the lines InfluxDB refused (all others are stored).

        Retries until stored, or raises :class:`InfluxUnavailable` once ``keep_trying`` says no.
        """
        if not lines:
            return []
        body = "\n".join(lines).encode()
        resp = await self._retrying(
            lambda: self.client.post(
                "/write",
                params={"db": self.settings.influx_db, "precision": "ns"},
                content=body,
            ),
            keep_trying,
            "write",
            accept=(204, 400, 413),
        )
        if resp.status_code == 204:
            return []
        if len(lines) == 1:
            if resp.status_code == 413:
                return [Rejected(lines[0], "line is larger than InfluxDB's max-body-size")]
            return [Rejected(lines[0], _error_text(resp))]
        # Some line is refused or the body is too large: halve until each refusal stands alone.
        # Re-writing the lines that were stored is harmless: same series, same time, same point.
        mid = len(lines) // 2
        return await self.write(lines[:mid], keep_trying) + await self.write(
            lines[mid:], keep_trying
        )

    async def _retrying(
        self,
        send: Callable[[], Awaitable[httpx.Response]],
        keep_trying: Callable[[], bool],
        what: str,
        accept: tuple[int, ...] = (200, 204),
    ) -> httpx.Response:
        delay = self.backoff_initial
        while True:
            try:
                resp = await send()
                if resp.status_code in accept:
                    self.failing = False
                    return resp
                problem = f"HTTP {resp.status_code}: {_error_text(resp)}"
                if resp.status_code in (401, 403):
                    problem += " (check SMARTCITY_INFLUX_USER / SMARTCITY_INFLUX_PASSWORD)"
                asked = _retry_after(resp)
                # InfluxDB's own wait as given; our backoff jittered below, so that writers
                # that failed together do not all retry together
                wait = asked if asked is not None else delay * random.uniform(0.5, 1.0)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc or 'connection failed'}"
                wait = delay * random.uniform(0.5, 1.0)
            self.failing = True
            if not keep_trying():
                raise InfluxUnavailable(f"InfluxDB {what} failed: {problem}")
            self.retries += 1
            log.warning(
                "influxdb %s failed, retrying",
                what,
                extra={"problem": problem, "retry_in_s": round(wait, 2)},
            )
            await asyncio.sleep(wait)
            delay = min(delay * 2, self.backoff_max)


def _error_text(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("error", resp.text))[:500]
    except ValueError:
        return resp.text[:500]


def _retry_after(resp: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), at most a minute so a
    shutdown's grace period is still checked; None when absent or unreadable."""
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), 60.0)
