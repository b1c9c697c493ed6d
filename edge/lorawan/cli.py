"""``smartcity lorawan``: the ChirpStack bridge (``[lorawan]``, ``SMARTCITY_LORAWAN_*``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pydantic import Field

from smartcity.settings import InfluxSettings, MqttSettings, add_arguments, load


class LorawanSettings(MqttSettings, InfluxSettings):
    """The broker (ChirpStack's events, the contract), the registry, and InfluxDB for the
    dead-letter records of what the bridge refuses."""

    section = "lorawan"

    registry_url: str = Field(
        "sqlite:///var/registry.db",
        description="Device registry (the API's, SQLAlchemy URL): devices are found by DevEUI.",
    )
    state: Path = Field(
        Path("var/lorawan/state.db"),
        description="The bridge's own file: join epochs (seq across re-joins), downlinks waiting "
        "for their ack. Keep it across restarts.",
    )
    password_file: Path | None = Field(
        None,
        description="File holding the broker password of the 'lorawan' account "
        "(e.g. var/mosquitto/passwords/lorawan); else the one in mqtt_url.",
    )
    application_id: str | None = Field(
        None,
        description="ChirpStack application id for downlinks to a device not heard since the "
        "bridge's state was made (else learned from each device's uplinks).",
    )
    client_id: str = Field("smartcity-lorawan", description="MQTT client id (the account's).")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "lorawan",
        parents=[common],
        help="bridge ChirpStack v4 (LoRaWAN) to the platform's contract",
        description="Subscribe to ChirpStack v4's MQTT integration (JSON), decode each uplink "
        "with its device's profile (found by DevEUI in the registry) and publish the contract; "
        "send commands as downlinks. See docs/lorawan.md.",
    )
    add_arguments(p, LorawanSettings)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load(LorawanSettings, args)
    import signal
    import threading

    from edge.lorawan.bridge import Bridge, serve
    from edge.lorawan.deadletters import DeadLetterStore
    from edge.lorawan.registry import Registry
    from edge.lorawan.state import State
    from smartcity.errors import UserError

    password = None
    if settings.password_file is not None:
        try:
            password = settings.password_file.read_text().strip()
        except OSError as exc:
            raise UserError(f"cannot read --password-file: {exc}") from None
    registry = Registry(settings.registry_url)
    state = State(settings.state)
    store = DeadLetterStore(settings)
    bridge = Bridge(
        state, registry.by_eui, registry.by_id, settings.city, settings.application_id, store.add
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve(bridge, settings.mqtt_url, password, stop, settings.client_id)
    except OSError as exc:
        raise UserError(f"cannot reach the broker at {settings.mqtt_url}: {exc}") from None
    finally:
        state.close()
    return 0
