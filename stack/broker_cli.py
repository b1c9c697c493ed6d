"""``smartcity broker``: broker accounts alone, changed while the broker runs.

An account bound to its id, confined to its own topics (``smartcity/broker_acl.py``), made
through the dynamic security plugin with the admin account ``smartcity up`` creates. Devices are
provisioned with ``smartcity devices`` (registry and broker together, stack/devices_cli.py);
this one is for repairs and for a broker without the registry (docker-compose's, so far).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pydantic import Field

from smartcity.devices import DEVICE_TYPES
from smartcity.settings import MqttSettings, add_arguments, load


class BrokerSettings(MqttSettings):
    section = "broker"

    admin_password_file: Path = Field(
        Path("var/mosquitto/passwords/smartcity-admin"),
        description="File holding the broker admin's password (smartcity up writes it; with "
        "docker-compose, write MQTT_PASSWORD_SMARTCITY_ADMIN of .env to a 0600 file).",
    )
    ca_file: Path | None = Field(None, description="CA certificate for an mqtts:// broker.")


ACTIONS = {
    "add-device": "make a device's account; prints its new password once",
    "set-password": "give an account a new password (the old one is refused from now on)",
    "disable": "refuse an account from now on; a connected client is disconnected at once",
    "enable": "accept a disabled account again",
}


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "broker",
        help="field devices' broker accounts: add, set a password, disable, enable",
        description="Change the broker's accounts while it runs, through Mosquitto's dynamic "
        "security plugin, as the admin account. See docs/edge.md.",
    )
    actions = p.add_subparsers(dest="broker_command", required=True, metavar="ACTION")
    for name, text in ACTIONS.items():
        a = actions.add_parser(name, parents=[common], help=text, description=text)
        if name == "add-device":
            a.add_argument("device_type", help=", ".join(DEVICE_TYPES))
        a.add_argument("device_id" if name == "add-device" else "username")
        add_arguments(a, BrokerSettings)
        a.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load(BrokerSettings, args)
    from smartcity import broker_accounts
    from smartcity.dynsec import new_password
    from smartcity.errors import UserError

    try:
        admin = broker_accounts.Admin.from_files(
            settings.mqtt_url, settings.admin_password_file, settings.ca_file
        )
        action = args.broker_command
        if action == "add-device":
            password = new_password()
            broker_accounts.add_device(
                admin, args.device_type, args.device_id, password, settings.city
            )
            print(f"device {args.device_id}: username {args.device_id}, password {password}")
        elif action == "set-password":
            password = new_password()
            broker_accounts.set_password(admin, args.username, password)
            print(f"{args.username}: new password {password}")
        elif action == "disable":
            broker_accounts.disable_client(admin, args.username)
            print(f"{args.username}: disabled (disconnected if it was connected)")
        else:
            broker_accounts.enable_client(admin, args.username)
            print(f"{args.username}: enabled")
    except (broker_accounts.BrokerAccountError, ValueError) as exc:
        raise UserError(str(exc)) from None
    return 0
