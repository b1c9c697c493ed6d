"""Sending commands to devices, for ``POST /v1/devices/{id}/commands`` and ``smartcity command``.

A command is validated against its device type's command models before anything is published
(:func:`smartcity.commands.build`), published on the device's ``cmd`` topic over the API's own
broker account (``api``: it may write command topics and nothing else), recorded in the audit
trail, and stored as a ``sent`` point; the device's answer reaches InfluxDB through the ingester
(``cmd_result``), and :func:`recent` reads both back into one state per command.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import threading
import time
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy.orm import Session

from api.settings import ApiSettings
from smartcity import audit, commands
from smartcity.commands import CommandState
from smartcity.contract import encode, topic
from smartcity.influx import InfluxReader, InfluxWriter, at, ident
from smartcity.registry.models import Device
from smartcity.settings import mqtt_endpoint, safe_url
from smartcity.storage import COMMAND_MEASUREMENT, COMMAND_STATE_TAG

log = logging.getLogger("smartcity.api")
#: Longest a publish waits for the broker's acknowledgement.
PUBLISH_TIMEOUT = 10.0
#: Most commands ``recent`` returns, and how far back it looks.
RECENT_LIMIT = 200
RECENT_DAYS = 7


class SendFailed(RuntimeError):
    """The broker did not take the command; the message says why and what to do."""


class CommandSender:
    """One MQTT connection, opened on the first command and kept, that waits for each PUBACK.

    MQTT 5, so a publish the broker's ACL refuses comes back as a failed PUBACK (reason 135)
    instead of being dropped in silence as MQTT 3.1.1 would.
    """

    def __init__(self, mqtt_url: str) -> None:
        self.url = mqtt_url
        host, port, tls, user, password = mqtt_endpoint(mqtt_url)
        self.address = (host, port)
        # a broker with accounts binds each login to its username as client id
        client_id = user or f"smartcity-api-{os.getpid()}"
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
        )
        if user:
            self.client.username_pw_set(user, password)
        if tls:
            self.client.tls_set_context(ssl.create_default_context())
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_publish = self._on_publish
        self.lock = threading.Lock()
        self.answered = threading.Event()
        self.refusal: str | None = None
        self.unreachable = threading.Event()  # the last attempt found no broker
        self.started = False
        self.acks: dict[int, ReasonCode] = {}
        self.acked = threading.Condition()

    def _on_connect(
        self, client: paho.Client, userdata: object, flags: object, rc: ReasonCode, props: object
    ) -> None:
        self.refusal = str(rc) if rc.is_failure else None
        self.unreachable.clear()
        self.answered.set()

    def _on_connect_fail(self, client: paho.Client, userdata: object) -> None:
        self.unreachable.set()  # paho tries again in the background

    def _on_publish(
        self, client: paho.Client, userdata: object, mid: int, rc: ReasonCode, props: object
    ) -> None:
        with self.acked:
            self.acks[mid] = rc
            self.acked.notify_all()

    def _connect(self) -> None:
        with self.lock:
            if self.started and self.client.is_connected():
                return
            if not self.started:
                self.client.connect_async(*self.address, keepalive=30)
                self.client.loop_start()
                self.started = True
        deadline = time.monotonic() + PUBLISH_TIMEOUT
        while not self.client.is_connected():
            if self.answered.is_set() and self.refusal is not None:
                raise SendFailed(
                    f"the broker at {safe_url(self.url)} refused the API's login "
                    f"({self.refusal}): set SMARTCITY_MQTT_URL to the api account's "
                    "(smartcity up keeps its password in var/mosquitto/passwords/api)"
                )
            if self.unreachable.is_set() or time.monotonic() > deadline:
                raise SendFailed(
                    f"cannot reach the MQTT broker at {safe_url(self.url)}: is it running? "
                    "(SMARTCITY_MQTT_URL); nothing was sent"
                )
            time.sleep(0.02)

    def publish(self, topic_name: str, payload: bytes) -> None:
        """Publish at QoS 1 and wait for the broker's acknowledgement, or raise SendFailed."""
        self._connect()
        info = self.client.publish(topic_name, payload, qos=1)
        with self.acked:
            ok = self.acked.wait_for(lambda: info.mid in self.acks, PUBLISH_TIMEOUT)
            rc = self.acks.pop(info.mid, None)
        if not ok or rc is None:
            raise SendFailed(f"the broker did not acknowledge the command in {PUBLISH_TIMEOUT} s")
        if rc.is_failure:
            raise SendFailed(
                f"the broker refused the command ({rc}): the API's account may write only "
                "command topics of its city (smartcity/broker_acl.py)"
            )

    def close(self) -> None:
        if self.started:
            self.client.disconnect()
            self.client.loop_stop()


async def send(
    session: Session,
    sender: CommandSender,
    writer: InfluxWriter,
    settings: ApiSettings,
    device: Device,
    name: str,
    args: dict[str, object],
    actor: str,
) -> CommandState:
    """Validate, publish, record and store one command; raises ``CommandError`` (nothing sent)
    or ``SendFailed`` (nothing sent, the refusal audited)."""
    now = datetime.now(UTC)
    command_id = commands.new_command_id(now)
    detail = {"command_id": command_id, "name": name, "args": args}

    def record(outcome: str) -> None:
        audit.record(
            session, actor=actor, action="command", device_id=device.device_id,
            outcome=outcome, detail=detail,
        )  # fmt: skip
        session.commit()

    try:
        command = commands.build(device.device_type, name, args, command_id)
    except commands.CommandError as exc:
        record(f"refused: {exc.reason}")
        raise
    where = topic(device.device_type, device.device_id, "cmd", settings.city)
    sent_ns = time.time_ns()  # before publishing: a device may answer within milliseconds
    try:
        await asyncio.to_thread(sender.publish, where, encode(command))
    except SendFailed as exc:
        record(f"failed: {exc}")
        raise
    record("sent")
    log.info("command sent", extra={"device_id": device.device_id, "id": command_id})
    point = commands.sent_line(
        device.device_type, device.device_id, device.zone, command, actor, sent_ns
    )
    # published already: keep trying for a while, then say InfluxDB is away (503)
    deadline = time.monotonic() + 15
    await writer.write([point], keep_trying=lambda: time.monotonic() < deadline)
    return CommandState(
        command_id=command_id,
        name=name,
        args=commands.arguments(command),
        actor=actor,
        sent_at=datetime.fromtimestamp(sent_ns / 1e9, UTC),
        state="sent",
    )


async def recent(
    reader: InfluxReader, device_id: str, now: datetime, timeout_s: float
) -> list[CommandState]:
    """The device's commands of the last ``RECENT_DAYS`` days with their states, newest first."""
    rows = await reader.rows(
        f'SELECT * FROM $m WHERE device_id = $id AND time > $from GROUP BY "{COMMAND_STATE_TAG}"',
        {
            "m": ident(COMMAND_MEASUREMENT),
            "id": device_id,
            "from": at(now - timedelta(days=RECENT_DAYS)),
        },
    )
    triples = ((r.tags.get(COMMAND_STATE_TAG, ""), r.time, r.values) for r in rows)
    return commands.states(triples, now, timeout_s)[:RECENT_LIMIT]
