"""Process management for the ingester: signals, and ``--workers N`` processes."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal

from ingest.service import Ingester
from ingest.settings import IngestSettings
from smartcity.logs import JsonFormatter

log = logging.getLogger("smartcity.ingest")


async def _serve_one(settings: IngestSettings, worker: int) -> None:
    ingester = Ingester(settings, worker)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, ingester.stop)
    await ingester.run()


def _worker(settings: IngestSettings, worker: int, level: str, fmt: str) -> None:
    from smartcity import logs

    logs.configure(level, fmt)
    asyncio.run(_serve_one(settings, worker))


def serve(settings: IngestSettings) -> int:
    """Run the ingester until SIGTERM/SIGINT; exits 0 after a clean drain."""
    if settings.workers == 1:
        asyncio.run(_serve_one(settings, 0))
        return 0
    if settings.share_group == "":
        log.error("--workers > 1 needs a shared subscription: drop --share-group ''")
        return 2
    ctx = multiprocessing.get_context("spawn")
    root = logging.getLogger()
    level = logging.getLevelName(root.getEffectiveLevel()).lower()
    json_logs = any(isinstance(h.formatter, JsonFormatter) for h in root.handlers)
    fmt = "json" if json_logs else "logfmt"
    procs = [
        ctx.Process(target=_worker, args=(settings, i + 1, level, fmt), name=f"ingest-{i + 1}")
        for i in range(settings.workers)
    ]
    for p in procs:
        p.start()

    def forward(sig: int, _frame: object) -> None:
        for p in procs:
            if p.pid is not None and p.is_alive():
                p.terminate()

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for p in procs:
        p.join()
    return max((p.exitcode or 0) for p in procs)
