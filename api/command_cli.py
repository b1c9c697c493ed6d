"""``smartcity command ID NAME [key=value ...]``: send a device a command from a server's shell.

Part of the API component, not the core: it publishes over MQTT and writes to InfluxDB exactly
as ``POST /v1/devices/{id}/commands`` does (same validation, same ``api`` broker account, same
``sent`` point and audit entry), with the OS user as the actor. It reads the API's settings
(``[api]``, ``SMARTCITY_API_*``), so it finds the same registry.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from api.settings import ApiSettings
from smartcity.settings import add_arguments, load


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "command",
        parents=[common],
        help="send a device a command (dim a lamp, take a connector out of service)",
        description="Validate a command against the device type's commands, publish it over "
        "the broker's api account and record it. Arguments are key=value, values JSON when "
        "they parse as JSON. Examples: smartcity command sl-00001 dim level=0.4; smartcity "
        "command ev-00003 setConnector connectorId=1 enabled=false --wait 30",
    )
    p.add_argument("device_id", help="the device, as registered (e.g. sl-00001)")
    p.add_argument("name", help="the command: dim, switch, schedule, setConnector, setInterval")
    p.add_argument("args", nargs="*", metavar="KEY=VALUE", help="its arguments, e.g. level=0.4")
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to this long for the device's answer and print it (default: do not wait)",
    )
    add_arguments(p, ApiSettings)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load(ApiSettings, args)
    return asyncio.run(_run(settings, args.device_id, args.name, args.args, args.wait))


async def _run(
    settings: ApiSettings, device_id: str, name: str, pairs: list[str], wait: float
) -> int:
    import time
    from datetime import UTC, datetime

    from sqlalchemy.orm import Session

    from api import commands as sending
    from api.registry import crud
    from smartcity import audit, commands
    from smartcity.errors import UserError
    from smartcity.influx import InfluxReader, InfluxUnavailable, InfluxWriter
    from smartcity.registry.db import make_engine

    engine = make_engine(settings.registry_url)
    sender = sending.CommandSender(settings.mqtt_url)
    writer = InfluxWriter(settings)
    try:
        with Session(engine) as session:
            device = crud.get_device(session, device_id)
            if device is None:
                raise UserError(
                    f"device {device_id!r} is not in the registry ({settings.registry_url}); "
                    "check the id, or --registry-url / SMARTCITY_API_REGISTRY_URL"
                )
            try:
                args = commands.parse_args(pairs)
                state = await sending.send(
                    session, sender, writer, settings, device, name, args, audit.cli_actor()
                )
            except commands.CommandError as exc:
                raise UserError(f"{exc.reason}; nothing was sent") from None
            except sending.SendFailed as exc:
                raise UserError(str(exc)) from None
            except InfluxUnavailable as exc:
                raise UserError(
                    f"the command was sent, but its record could not be stored: {exc}"
                ) from None
        print(f"{state.command_id} sent to {device_id}: {name} {state.args}", flush=True)
        if wait <= 0:
            return 0
        reader = InfluxReader(settings)
        deadline = time.monotonic() + wait
        try:
            while True:
                found = await sending.recent(
                    reader, device_id, datetime.now(UTC), settings.command_timeout
                )
                mine = next((s for s in found if s.command_id == state.command_id), None)
                if mine is not None and mine.state not in ("sent", "expired"):
                    reason = f": {mine.reason}" if mine.reason else ""
                    print(f"{state.command_id} {mine.state}{reason}", flush=True)
                    return 0 if mine.state == "applied" else 1
                if time.monotonic() > deadline:
                    raise UserError(
                        f"no answer from {device_id} within {wait:g} s (is the device online, "
                        "and the ingester running?)"
                    )
                await asyncio.sleep(0.5)
        finally:
            await reader.aclose()
    finally:
        sender.close()
        await writer.aclose()
        engine.dispose()
