"""``smartcity devices``: provision, rotate, revoke and import field devices.

Each operation changes the registry database and the broker together (smartcity/provisioning.py)
and is recorded in the audit trail as the OS user running it. In the stack, not a component:
it needs both the registry and the broker's admin account, which only a server has.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from smartcity.devices import DEVICE_TYPES
from smartcity.settings import MqttSettings, add_arguments, load

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from smartcity.broker_accounts import Admin
    from smartcity.provisioning import Credentials


class DevicesSettings(MqttSettings):
    section = "devices"

    registry_url: str = Field(
        "sqlite:///var/registry.db",
        description="Device registry (SQLAlchemy URL), the API's: sqlite:///path or "
        "postgresql+psycopg://user:pass@host/db.",
    )
    admin_password_file: Path = Field(
        Path("var/mosquitto/passwords/smartcity-admin"),
        description="File holding the broker admin's password (smartcity up writes it; with "
        "docker-compose, write MQTT_PASSWORD_SMARTCITY_ADMIN of .env to a 0600 file).",
    )
    ca_file: Path | None = Field(None, description="CA certificate for an mqtts:// broker.")
    agent_mqtt_url: str | None = Field(
        None,
        description="The broker URL written into agent configs, as devices reach it (default: "
        "--mqtt-url), e.g. mqtts://mqtt.comune.cremona.it:8883.",
    )
    agent_ca_file: Path | None = Field(
        None,
        description="The CA file path written into agent configs, as it is on the device "
        "(for an mqtts:// broker whose CA is a private one).",
    )


ACTIONS = {
    "provision": "register a device and make its broker login (password shown once)",
    "rotate": "give a device a new broker password; the old one is refused from now on",
    "revoke": "disable a device's broker login at once and mark it revoked in the registry",
    "import": "provision every line of a CSV file: device_type,device_id,zone,lat,lon[,name]",
}


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "devices",
        help="field devices: provision, rotate, revoke, import (registry and broker together)",
        description="Provision field devices in the registry and the broker at once; a failure "
        "leaves both as they were. See docs/edge.md.",
    )
    actions = p.add_subparsers(dest="devices_command", required=True, metavar="ACTION")
    for name, text in ACTIONS.items():
        a = actions.add_parser(name, parents=[common], help=text, description=text)
        if name == "provision":
            a.add_argument("--device-type", required=True, help=", ".join(DEVICE_TYPES))
            a.add_argument("--device-id", required=True, help="e.g. sl-00042 (its topic level)")
            a.add_argument("--zone", required=True, help="the quartiere, e.g. Centro")
            a.add_argument("--lat", required=True, type=float, help="latitude (WGS84)")
            a.add_argument("--lon", required=True, type=float, help="longitude (WGS84)")
            a.add_argument("--name", help="e.g. the street and number")
            a.add_argument(
                "--dev-eui", type=str.lower,
                help="LoRaWAN devices: the DevEUI (16 hex digits), how smartcity lorawan finds it",
            )  # fmt: skip
            a.add_argument(
                "--profile", help="LoRaWAN devices: the sensor model, e.g. milesight-em400-udl"
            )
        elif name == "import":
            a.add_argument("csv_file", type=Path, metavar="CSV_FILE")
            a.add_argument(
                "--out-dir",
                type=Path,
                help="write each new device's agent config as DIR/<device id>.toml (0600) "
                "instead of printing its password",
            )
        else:
            a.add_argument("device_id", metavar="ID")
        if name in ("provision", "rotate"):
            a.add_argument(
                "--out",
                type=Path,
                metavar="FILE",
                help="write the agent config for 'smartcity edge run --config' here (0600) "
                "instead of printing the password",
            )
        add_arguments(a, DevicesSettings)
        a.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load(DevicesSettings, args)
    from sqlalchemy.orm import Session

    from smartcity import provisioning
    from smartcity.audit import cli_actor
    from smartcity.broker_accounts import Admin, BrokerAccountError
    from smartcity.errors import UserError
    from smartcity.registry.db import make_engine

    try:
        admin = Admin.from_files(settings.mqtt_url, settings.admin_password_file, settings.ca_file)
    except BrokerAccountError as exc:
        raise UserError(str(exc)) from None
    engine = make_engine(settings.registry_url)
    actor, city, action = cli_actor(), settings.city, args.devices_command
    try:
        with Session(engine, expire_on_commit=False) as session:
            if action == "provision":
                new = provisioning.NewDevice(
                    args.device_type,
                    args.device_id,
                    args.zone,
                    args.lat,
                    args.lon,
                    args.name,
                    dev_eui=args.dev_eui,
                    lorawan_profile=args.profile,
                )
                creds = provisioning.provision(session, admin, city, new, actor)
                hand_out(creds, settings, args.out, "provisioned")
            elif action == "rotate":
                creds = provisioning.rotate(session, admin, city, args.device_id, actor)
                hand_out(creds, settings, args.out, "new password")
            elif action == "revoke":
                device = provisioning.revoke(session, admin, args.device_id, actor)
                print(
                    f"{device.device_id}: revoked (broker login disabled, disconnected if it "
                    f"was connected; registry: revoked at {device.revoked_at:%Y-%m-%d %H:%M:%S} "
                    "UTC)"
                )
            else:
                return import_file(session, admin, settings, args, actor)
    except provisioning.ProvisioningError as exc:
        raise UserError(str(exc)) from None
    finally:
        engine.dispose()
    return 0


def hand_out(creds: Credentials, settings: DevicesSettings, out: Path | None, what: str) -> None:
    """The password once: into the agent config at ``out`` (not printed), else printed."""
    ocpp = (
        f"; OCPP charge point id {creds.device_id}, OCPP password {creds.ocpp_password}"
        if creds.ocpp_password is not None
        else ""
    )
    if out is None:
        print(
            f"{creds.device_id}: {what}; broker username {creds.username}, password "
            f"{creds.password}{ocpp} (shown once: store it now)"
        )
        return
    write_agent_config(creds, settings, out)
    print(
        f"{creds.device_id}: {what}; agent config with its broker login"
        f"{' and OCPP password' if ocpp else ''} written to {out} "
        "(mode 0600; the password is only there, not printed)"
    )


def write_agent_config(creds: Credentials, settings: DevicesSettings, out: Path) -> None:
    from smartcity.dynsec import write_secret
    from smartcity.provisioning import agent_config

    url = settings.agent_mqtt_url or settings.mqtt_url
    write_secret(out, agent_config(creds, url, settings.agent_ca_file or settings.ca_file))


def import_file(
    session: Session, admin: Admin, settings: DevicesSettings, args: argparse.Namespace, actor: str
) -> int:
    """Provision each line; report each (created or refused, and why). Exit 1 if any was
    refused, after every good line is done."""
    from smartcity.errors import UserError
    from smartcity.provisioning import import_csv

    try:
        text = args.csv_file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {args.csv_file}: {exc}") from None
    created = refused = 0
    for line in import_csv(session, admin, settings.city, text, actor):
        if line.credentials is None:
            refused += 1
            print(f"line {line.line}: {line.device_id or '?'}: refused: {line.reason}")
            continue
        created += 1
        creds = line.credentials
        if args.out_dir is not None:
            out = args.out_dir / f"{creds.device_id}.toml"
            write_agent_config(creds, settings, out)
            print(f"line {line.line}: {creds.device_id}: created; agent config {out}")
        else:
            print(f"line {line.line}: {creds.device_id}: created; password {creds.password}")
    print(f"{created} created, {refused} refused", file=sys.stderr)
    return 1 if refused else 0
