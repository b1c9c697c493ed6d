"""``smartcity ocpp``: the OCPP 1.6J central system for real chargers (docs/ocpp.md)."""

from __future__ import annotations

import argparse
from typing import Any

from edge.ocpp.settings import OcppSettings
from smartcity.settings import add_arguments, load


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "ocpp",
        parents=[common],
        help="the OCPP 1.6J central system: real chargers in, the contract out",
        description="Chargers connect to ws://HOST:PORT/ocpp/<chargePointId> (wss:// with "
        "--cert-file/--key-file) with the OCPP password provisioning gave them; what they say "
        "is published on their contract topics as an edge agent would, and operators' "
        "commands reach them as OCPP calls. See docs/ocpp.md.",
    )
    add_arguments(p, OcppSettings)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load(OcppSettings, args)
    import asyncio
    import logging
    import signal

    from edge.ocpp.central import Gateway

    # the ocpp package logs every frame, websockets every connection, at info: quiet them
    logging.getLogger("ocpp").setLevel(logging.WARNING)
    logging.getLogger("websockets").setLevel(logging.WARNING)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Gateway(settings).run(stop)

    asyncio.run(main())
    return 0
