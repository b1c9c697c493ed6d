"""``smartcity edge``: run the agent for one field device, or check an installation."""

from __future__ import annotations

import argparse
from typing import Any

from edge.settings import EdgeSettings
from smartcity.settings import add_arguments, load


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "edge",
        help="the edge agent on a field controller: run it, or check an installation",
        description="One agent per field device (lighting cabinet, bin gateway, charging "
        "station): it reads the device through a driver, keeps every reading in an on-disk "
        "outbox until the broker acknowledges it, and obeys the device's commands. "
        "See docs/edge.md.",
    )
    edge_sub = p.add_subparsers(dest="edge_command", required=True, metavar="ACTION")
    run_p = edge_sub.add_parser(
        "run",
        parents=[common],
        help="run the agent until SIGTERM",
        description="Run one agent. With --config FILE the settings come from its [edge] "
        "section; without, e.g.: smartcity edge run --driver simulated --device-type "
        "streetlight --device-id sl-00001 --interval 10",
    )
    add_arguments(run_p, EdgeSettings)
    run_p.set_defaults(func=run)
    check_p = edge_sub.add_parser(
        "check",
        parents=[common],
        help="check an installation: config, outbox, device, broker login, a test reading",
        description="Validate the config, open the outbox, read the device once, log in to the "
        "broker with the device's credentials, subscribe to its command topic, publish one "
        "reading and confirm its PUBACK. Prints PASS/FAIL per step with the next step for each "
        "failure; exits 1 if any step failed. Stop the agent first: the check logs in as the "
        "device, and refuses to run while the agent holds the outbox.",
    )
    check_p.add_argument(
        "--ocpp",
        metavar="ID",
        help="check an OCPP charger instead, on the host of its central system: registered, "
        "password issued, booted, connected now (the [ocpp] settings; docs/ocpp.md)",
    )
    add_arguments(check_p, EdgeSettings)
    check_p.set_defaults(func=check)


def run(args: argparse.Namespace) -> int:
    settings = load(EdgeSettings, args)
    import signal
    import threading

    from edge.agent import serve
    from edge.outbox import OutboxError
    from smartcity.errors import UserError

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve(settings, stop)
    except OutboxError as exc:
        raise UserError(str(exc)) from None
    return 0


def check(args: argparse.Namespace) -> int:
    if args.ocpp:
        from edge.ocpp.check import run as run_ocpp_check

        return run_ocpp_check(args.ocpp, args)
    from edge.check import run as run_check

    return run_check(args)
