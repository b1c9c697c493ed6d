"""The InfluxDB writer against a real HTTP server that asks for a wait: InfluxDB itself cannot
be made to send ``Retry-After``, so a tiny stdlib server stands in for it."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from smartcity.influx import InfluxWriter
from smartcity.settings import InfluxSettings


class Busy(BaseHTTPRequestHandler):
    """Answers the first ``busy`` writes with 503 and ``Retry-After``, then 204."""

    busy = 3
    retry_after = "1"
    seen: list[float]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append(time.monotonic())
        if len(self.seen) <= self.busy:
            self.send_response(503)
            self.send_header("Retry-After", self.retry_after)
            self.send_header("Content-Type", "application/json")
            body = b'{"error":"busy"}'
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(204)
            self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def busy_server() -> Iterator[tuple[str, list[float]]]:
    seen: list[float] = []
    handler = type("Handler", (Busy,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


async def test_retry_after_is_waited_in_full_never_less(
    busy_server: tuple[str, list[float]],
) -> None:
    url, seen = busy_server
    writer = InfluxWriter(InfluxSettings(influx_url=url, influx_db="test"))
    try:
        assert await writer.write(["m v=1i 1"]) == []
    finally:
        await writer.aclose()
    assert len(seen) == 4
    gaps = [b - a for a, b in itertools.pairwise(seen)]
    assert min(gaps) >= 1.0, gaps
    assert writer.retries == 3
