"""Broker accounts changed while the broker runs, through the dynamic security plugin.

Each call is one short MQTT 5 connection as the admin account (client id ``smartcity-admin``):
it publishes the commands on ``$CONTROL/dynamic-security/v1`` and waits for the plugin's answer
on ``.../response``, raising :class:`BrokerAccountError` with the plugin's own error text. The
broker applies a change at once: a disabled or deleted client is disconnected immediately and
refused from then on; a changed password applies to the next login.

Needs paho-mqtt (the ``broker`` extra; ``server`` includes it), imported here only, so the rest
of the core does not depend on it.
"""

from __future__ import annotations

import json
import ssl
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from smartcity.broker_acl import ADMIN, CONTROL_TOPIC, device_account, dynsec_acls
from smartcity.settings import mqtt_endpoint, safe_url

TIMEOUT = 10.0


class BrokerAccountError(RuntimeError):
    """The broker could not be reached, refused the admin login, or refused a command."""


@dataclass(frozen=True)
class Admin:
    """Where the broker is and the admin account's login."""

    url: str
    password: str
    username: str = ADMIN
    ca_file: Path | None = None

    @classmethod
    def from_files(cls, url: str, password_file: Path, ca_file: Path | None = None) -> Admin:
        try:
            password = password_file.read_text().strip()
        except OSError as exc:
            raise BrokerAccountError(
                f"cannot read the broker admin's password from {password_file}: "
                f"{exc.strerror}; smartcity up writes it there on its first run"
            ) from None
        return cls(url, password, ca_file=ca_file)


def run(admin: Admin, *commands: dict[str, Any]) -> list[dict[str, Any]]:
    """Send ``commands`` in one request; their answers, in order. Raises on the first error."""
    host, port, tls, _, _ = mqtt_endpoint(admin.url)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=ADMIN, protocol=paho.MQTTv5)
    client.username_pw_set(admin.username, admin.password)
    if tls:
        client.tls_set(ca_certs=str(admin.ca_file) if admin.ca_file else None)
    tag = uuid.uuid4().hex
    state: dict[str, Any] = {}
    done = threading.Event()

    def on_connect(c: paho.Client, _u: object, _f: object, reason: Any, _p: object) -> None:
        state["connack"] = reason
        if reason.is_failure:
            done.set()
        else:
            c.subscribe(f"{CONTROL_TOPIC}/response", qos=1)

    def on_subscribe(c: paho.Client, _u: object, _mid: int, reasons: Any, _p: object) -> None:
        if reasons[0].is_failure:
            state["error"] = f"the broker refused the admin's subscription: {reasons[0]}"
            done.set()
            return
        tagged = [{**cmd, "correlationData": f"{tag}-{i}"} for i, cmd in enumerate(commands)]
        c.publish(CONTROL_TOPIC, json.dumps({"commands": tagged}), qos=1)

    def on_message(_c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        answers = json.loads(msg.payload).get("responses", [])
        if any(str(a.get("correlationData", "")).startswith(tag) for a in answers):
            state["answers"] = answers
            done.set()

    def on_disconnect(_c: paho.Client, _u: object, _f: object, reason: Any, _p: object) -> None:
        if not done.is_set() and "connack" in state and not state["connack"].is_failure:
            # e.g. "Session taken over": another admin connection uses the same client id
            state["error"] = f"the broker closed the admin's connection: {reason}; try again"
            done.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.on_disconnect = on_disconnect
    where = safe_url(admin.url)
    try:
        client.connect(host, port, keepalive=30)
    except (OSError, ssl.SSLError) as exc:
        raise BrokerAccountError(f"cannot reach the MQTT broker at {where}: {exc}") from None
    client.loop_start()
    try:
        if not done.wait(TIMEOUT):
            raise BrokerAccountError(f"the broker at {where} did not answer in {TIMEOUT:.0f} s")
    finally:
        client.disconnect()
        client.loop_stop()
    if state["connack"].is_failure:
        raise BrokerAccountError(
            f"the broker at {where} refused the login of {admin.username!r}: "
            f"{state['connack']} (is its dynamic security plugin on, and the password right?)"
        )
    if "error" in state:
        raise BrokerAccountError(state["error"])
    answers: list[dict[str, Any]] = state["answers"]
    for answer in answers:
        if "error" in answer:
            raise BrokerAccountError(f"the broker refused {answer['command']}: {answer['error']}")
    return answers


def create_client(
    admin: Admin, username: str, password: str, clientid: str | None, roles: list[str]
) -> None:
    command: dict[str, Any] = {
        "command": "createClient",
        "username": username,
        "password": password,
        "roles": [{"rolename": r} for r in roles],
    }
    if clientid is not None:
        command["clientid"] = clientid
    run(admin, command)


def set_password(admin: Admin, username: str, password: str) -> None:
    run(admin, {"command": "setClientPassword", "username": username, "password": password})


def disable_client(admin: Admin, username: str) -> None:
    """Refuse the client from now on; a connected one is disconnected at once."""
    run(admin, {"command": "disableClient", "username": username})


def enable_client(admin: Admin, username: str) -> None:
    run(admin, {"command": "enableClient", "username": username})


def get_client(admin: Admin, username: str) -> dict[str, Any]:
    (answer,) = run(admin, {"command": "getClient", "username": username})
    client: dict[str, Any] = answer["data"]["client"]
    return client


def add_device(admin: Admin, device_type: str, device_id: str, password: str, city: str) -> None:
    """A device's account: its role (its own topics only) and its client, bound to its id.

    Both in one request; if the client cannot be made (an existing username), the role made
    for it is removed again, so nothing half-made stays behind.
    """
    account = device_account(device_type, device_id, city)
    run(admin, {"command": "createRole", "rolename": account.role, "acls": dynsec_acls(account)})
    try:
        create_client(admin, account.username, password, account.clientid, [account.role])
    except BrokerAccountError:
        run(admin, {"command": "deleteRole", "rolename": account.role})
        raise
