"""The agent's MQTT client: TLS, per-device credentials, persistent session, Last Will.

paho-mqtt only (no asyncio, no extra dependency): the agent drives ``client.loop()`` from its own
single thread, so callbacks run there too and the outbox needs no lock.
"""

from __future__ import annotations

import ssl

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.settings import EdgeSettings
from smartcity.contract import Status, encode, topic
from smartcity.settings import mqtt_endpoint


def new_client(settings: EdgeSettings, client_id: str, *, agent: bool = True) -> paho.Client:
    """A configured, unconnected client; ``agent=False`` (the field check) sets no Last Will."""
    _, _, tls, _, _ = mqtt_endpoint(settings.mqtt_url)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    user, password = settings.credentials()
    if user is not None:
        client.username_pw_set(user, password)
    if tls:
        client.tls_set_context(ssl.create_default_context(cafile=settings.ca_file))
    # our own window bounds what is in flight; paho must neither refuse nor queue behind it
    client.max_inflight_messages_set(settings.window + 4)
    client.max_queued_messages_set(0)
    if agent:
        will = Status(v=1, state="offline", zone=settings.zone)
        client.will_set(status_topic(settings), encode(will), qos=1, retain=True)
    return client


def connect(client: paho.Client, settings: EdgeSettings, *, persistent: bool = True) -> None:
    """Open the connection (blocking up to paho's connect timeout); raises ``OSError``."""
    host, port, _, _, _ = mqtt_endpoint(settings.mqtt_url)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = settings.session_expiry if persistent else 0
    client.connect(
        host,
        port,
        keepalive=settings.keepalive,
        clean_start=not persistent,
        properties=props,
    )


def status_topic(settings: EdgeSettings) -> str:
    return topic(settings.device_type, settings.device_id, "status", settings.city)


def failed(reason: ReasonCode) -> bool:
    """True for an MQTT v5 reason code that means failure (0x80 and above)."""
    return reason.is_failure
