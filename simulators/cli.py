"""``smartcity simulate``: a seeded fleet publishing over MQTT."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from simulators.settings import SimulateSettings
from smartcity.settings import add_arguments, load


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "simulate",
        parents=[common],
        help="run a simulated fleet of every device type",
        description="Publish readings from a seeded fleet placed in Cremona's quartieri, over "
        "MQTT QoS 1, in real time, faster, or as fast as the broker acknowledges. Example: "
        "smartcity simulate --fleet streetlight=500,wastebin=200,airquality=20 --seed 7 "
        "--messages 20000",
    )
    add_arguments(p, SimulateSettings)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load(SimulateSettings, args)
    from simulators.publisher import BrokerUnreachable
    from simulators.run import run as simulate
    from smartcity.errors import UserError

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        acked = simulate(settings, stop)
    except BrokerUnreachable as exc:
        raise UserError(str(exc)) from None
    if settings.messages is not None and acked != settings.messages and not stop.is_set():
        raise UserError(f"only {acked} of {settings.messages} readings were acknowledged")
    return 0
