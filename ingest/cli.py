"""``smartcity ingest``: MQTT to InfluxDB."""

from __future__ import annotations

import argparse
from typing import Any

from ingest.settings import IngestSettings
from smartcity.settings import add_arguments, load


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "ingest",
        parents=[common],
        help="validate device messages from MQTT and write them to InfluxDB",
        description="Subscribe (QoS 1, persistent session, shared subscription) to every "
        "device's telemetry, events, status and health; validate against the contract; write "
        "to InfluxDB's v1 /write in batches; acknowledge only what is stored. Invalid messages "
        "go to the dead-letter topic and the 'deadletter' measurement with their reason.",
    )
    add_arguments(p, IngestSettings)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load(IngestSettings, args)
    from ingest.runner import serve

    return serve(settings)
