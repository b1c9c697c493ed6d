"""ChirpStack v4 events (JSON marshaler) to contract messages, and contract commands to downlinks.

:meth:`Bridge.handle` takes one MQTT message and returns the messages to publish, so the
translation is tested and measured without a broker; :func:`serve` runs it on one paho client.
Nothing a device or ChirpStack sends stops the bridge: what cannot be translated is
dead-lettered on ``smartcity/v1/deadletter`` with its reason and counted.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import ValidationError

from edge.lorawan.state import State
from smartcity import __version__, lorawan_profiles
from smartcity.contract import (
    DEADLETTER_TOPIC,
    CommandResult,
    Health,
    InvalidMessage,
    decode_command,
    describe,
    encode,
    encode_telemetry,
    topic,
)
from smartcity.devices import DEVICE_TYPES
from smartcity.lorawan_profiles import ProfileError
from smartcity.settings import mqtt_endpoint

log = logging.getLogger("smartcity.lorawan")

#: ChirpStack's topics: application/{application id}/device/{DevEUI}/event/{kind}.
EVENTS = "application/+/device/+/event/+"
KINDS = ("up", "status", "join", "ack", "txack", "log")
#: The most of a refused payload a dead-letter carries (the ingester's bound).
DEADLETTER_PAYLOAD_BYTES = 16_384
#: Namespace of downlink queue ids: uuid5(namespace, "<DevEUI>/<command id>").
_QUEUE_NS = uuid.UUID("7f0c4e4a-3c55-4a53-9a38-6f1c1d2c6b2e")


class Out(NamedTuple):
    topic: str
    payload: bytes


class Refused(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Known:
    """A registered LoRaWAN device."""

    device_id: str
    device_type: str
    zone: str
    dev_eui: str
    profile: str


#: Finds a device by DevEUI (``by_eui``) or by id (``by_id``); None when unregistered.
Lookup = Callable[[str], Known | None]


class Bridge:
    def __init__(
        self,
        state: State,
        by_eui: Lookup,
        by_id: Lookup,
        city: str,
        application_id: str | None = None,
        refused: Callable[[str, bytes, str, str], None] | None = None,
    ) -> None:
        self.state = state
        self.by_eui = by_eui
        self.by_id = by_id
        self.city = city
        self.application_id = application_id
        #: Told of each refusal (topic, payload, code, reason): the InfluxDB record.
        self.refused = refused
        self.started = time.monotonic()
        #: Messages per outcome: ``up``, ``status``..., and ``deadletter:<code>``.
        self.counts: Counter[str] = Counter()

    def handle(self, name: str, payload: bytes) -> list[Out]:
        """The messages one incoming message becomes (a dead-letter if it is refused)."""
        try:
            if name.startswith("application/"):
                out = self._event(name, payload)
            else:
                out = self._command(name, payload)
        except Refused as exc:
            self.counts[f"deadletter:{exc.code}"] += 1
            log.info("refused %s: %s", name, exc)
            if self.refused is not None:
                self.refused(name, payload, exc.code, exc.reason)
            return [Out(DEADLETTER_TOPIC, deadletter(name, payload, exc.code, exc.reason))]
        return out

    # ChirpStack -> contract

    def _event(self, name: str, payload: bytes) -> list[Out]:
        parts = name.split("/")
        if len(parts) != 6 or parts[2] != "device" or parts[4] != "event" or parts[5] not in KINDS:
            raise Refused("bad_topic", f"not application/<id>/device/<DevEUI>/event/{KINDS}")
        application_id, dev_eui, kind = parts[1], parts[3].lower(), parts[5]
        try:
            body = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise Refused("bad_json", f"not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise Refused("bad_json", "not a JSON object")
        info = body.get("deviceInfo") or {}
        said = str(info.get("devEui", dev_eui)).lower()
        if said != dev_eui:
            raise Refused("invalid", f"deviceInfo.devEui {said} is not the topic's {dev_eui}")
        self.counts[kind] += 1
        if kind == "log":
            log.info("chirpstack log for %s: %s", dev_eui, body.get("description"))
            return []
        if kind == "txack":  # the gateway sent it; the device's ack is the result
            return []
        device = self.by_eui(dev_eui)
        if device is None:
            raise Refused("unknown_dev_eui", f"DevEUI {dev_eui} is not in the registry")
        self.state.heard(dev_eui, application_id)
        if kind == "join":
            epoch = self.state.joined(dev_eui, _ms(_time(body)))
            log.info("%s (%s) joined: epoch %d", device.device_id, dev_eui, epoch)
            return []
        if kind == "ack":
            return self._ack(body)
        if kind == "status":
            return [self._health(device, body, battery=_battery(body))]
        return self._uplink(device, body)

    def _uplink(self, device: Known, body: Mapping[str, Any]) -> list[Out]:
        profile = lorawan_profiles.load(device.profile)
        ts = _time(body)
        fcnt, fport = body.get("fCnt", 0), body.get("fPort")
        if type(fcnt) is not int or not 0 <= fcnt < 2**32 or type(fport) is not int:
            raise Refused("invalid", "fCnt and fPort must be integers (fCnt 32-bit)")
        try:
            obj = body.get("object")
            if isinstance(obj, dict) and profile.object_keys:
                raw = profile.from_object(obj)
            else:
                raw = profile.raw_values(fport, _data(body))
            if not raw:  # device information frame (versions, serial number)
                self.counts["info"] += 1
                return []
            fields = profile.contract_fields(raw)
        except ProfileError as exc:
            raise Refused(exc.code, f"{profile.name}: {exc.reason}") from None
        seq = self.state.seq(device.dev_eui, _ms(ts), fcnt)
        model = DEVICE_TYPES[device.device_type].reading_model
        try:
            reading = model(ts=ts, seq=seq, **fields)
        except ValidationError as exc:
            raise Refused("out_of_range", f"{profile.name}: {describe(exc)}") from None
        telemetry = Out(
            topic(device.device_type, device.device_id, "telemetry", self.city),
            encode_telemetry([reading], zone=device.zone),
        )
        return [telemetry, self._health(device, body)]

    def _health(self, device: Known, body: Mapping[str, Any], battery: float | None = None) -> Out:
        radio = _radio(body)
        try:
            health = Health(
                v=1, ts=_time(body), zone=device.zone, version=f"lorawan-bridge {__version__}",
                uptime=round(time.monotonic() - self.started, 3), outboxDepth=0, dropped=0,
                batteryLevel=battery, **radio,
            )  # fmt: skip
        except ValidationError as exc:
            raise Refused("invalid", describe(exc)) from None
        return Out(topic(device.device_type, device.device_id, "health", self.city), encode(health))

    def _ack(self, body: Mapping[str, Any]) -> list[Out]:
        queue_id = str(body.get("queueItemId", ""))
        pending = self.state.settled(queue_id)
        if pending is None:  # not ours, or its result was given already
            return []
        device_type, device_id, command_id = pending
        if body.get("acknowledged") is True:
            result = CommandResult(v=1, ts=_time(body), id=command_id, status="accepted")
        else:
            reason = "the device did not acknowledge the downlink"
            result = CommandResult(
                v=1, ts=_time(body), id=command_id, status="rejected", reason=reason
            )
        return [Out(topic(device_type, device_id, "cmd_result", self.city), encode(result))]

    # contract -> ChirpStack

    def _command(self, name: str, payload: bytes) -> list[Out]:
        parts = name.split("/")
        if len(parts) != 6 or parts[5] != "cmd" or parts[3] not in DEVICE_TYPES:
            raise Refused("bad_topic", "not a contract cmd topic")
        device_type, device_id = parts[3], parts[4]
        back = topic(device_type, device_id, "cmd_result", self.city)
        try:
            command = decode_command(device_type, payload)
        except InvalidMessage as exc:
            return [Out(back, _rejected(_command_id(payload), exc.reason))]
        device = self.by_id(device_id)
        if device is None or device.device_type != device_type:
            return [Out(back, _rejected(command.id, "not a registered LoRaWAN device"))]
        application = self.state.application(device.dev_eui) or self.application_id
        if application is None:
            why = "no uplink heard yet, so its ChirpStack application is unknown"
            return [Out(back, _rejected(command.id, why))]
        params = command.model_dump(exclude={"v", "id", "action"})
        try:
            fport, data = lorawan_profiles.load(device.profile).encode_downlink(
                getattr(command, "action", ""), params
            )
        except ProfileError as exc:
            return [Out(back, _rejected(command.id, exc.reason))]
        queue_id = str(uuid.uuid5(_QUEUE_NS, f"{device.dev_eui}/{command.id}"))
        self.state.sent(queue_id, device_type, device_id, command.id)
        self.counts["downlink"] += 1
        down = {
            "id": queue_id,
            "devEui": device.dev_eui,
            "confirmed": True,
            "fPort": fport,
            "data": base64.b64encode(data).decode(),
        }
        return [Out(f"application/{application}/device/{device.dev_eui}/command/down", _json(down))]


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _rejected(command_id: str | None, reason: str) -> bytes:
    now = datetime.now(UTC)
    return encode(CommandResult(v=1, ts=now, id=command_id, status="rejected", reason=reason[:512]))


def _command_id(payload: bytes) -> str | None:
    try:
        got = json.loads(payload).get("id")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return None
    return got if isinstance(got, str) and 0 < len(got) <= 64 else None


def _time(body: Mapping[str, Any]) -> datetime:
    text = body.get("time")
    if not isinstance(text, str):
        raise Refused("invalid", "the event has no time")
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise Refused("invalid", f"time {text!r:.40} is not ISO 8601") from None
    if ts.tzinfo is None:
        raise Refused("invalid", f"time {text!r:.40} has no offset")
    return ts


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def _data(body: Mapping[str, Any]) -> bytes:
    text = body.get("data")
    if not isinstance(text, str):
        raise ProfileError("undecodable", "no data (base64) in the uplink")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ProfileError("undecodable", "data is not base64") from None


def _radio(body: Mapping[str, Any]) -> dict[str, Any]:
    """RSSI, SNR and gateway of the best reception, and the spreading factor."""
    out: dict[str, Any] = {}
    rx = [r for r in body.get("rxInfo") or () if isinstance(r, dict)]
    if rx:
        best = max(rx, key=lambda r: r.get("snr", -99) if _number(r.get("snr")) else -99)
        if _number(best.get("rssi")):
            out["rssi"] = float(best["rssi"])
        if _number(best.get("snr")):
            out["snr"] = float(best["snr"])
        if isinstance(best.get("gatewayId"), str):
            out["gatewayId"] = best["gatewayId"].lower()
    lora = ((body.get("txInfo") or {}).get("modulation") or {}).get("lora") or {}
    if type(lora.get("spreadingFactor")) is int:
        out["spreadingFactor"] = lora["spreadingFactor"]
    return out


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _battery(body: Mapping[str, Any]) -> float | None:
    """ChirpStack's ``batteryLevel`` (percent) as 0-1; None when external or unknown."""
    if body.get("externalPowerSource") or body.get("batteryLevelUnavailable"):
        return None
    level = body.get("batteryLevel")
    return round(float(level) / 100, 4) if isinstance(level, int | float) else None


def deadletter(name: str, payload: bytes, code: str, reason: str) -> bytes:
    """The dead-letter message, in the ingester's format (docs/protocol.md)."""
    kept = payload[:DEADLETTER_PAYLOAD_BYTES]
    try:
        text, encoding = kept.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(kept).decode(), "base64"
    return _json(
        {
            "code": code,
            "reason": reason[:1024],
            "topic": name[:1024],
            "payload": text,
            "payload_encoding": encoding,
            "payload_bytes": len(payload),
            "payload_truncated": len(kept) < len(payload),
            "received_at": time.time(),
            "source": "lorawan",
        }
    )


def serve(
    bridge: Bridge,
    mqtt_url: str,
    password: str | None,
    stop: threading.Event,
    client_id: str = "smartcity-lorawan",
) -> None:
    """Subscribe to ChirpStack's events and the devices' commands; publish until ``stop``."""
    host, port, tls, user, url_password = mqtt_endpoint(mqtt_url)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    if user is not None:
        client.username_pw_set(user, password or url_password)
    if tls:
        client.tls_set()
    kinds = sorted({lorawan_profiles.load(n).device_type for n in lorawan_profiles.names()})
    filters = [EVENTS, *(topic(k, "+", "cmd", bridge.city) for k in kinds)]

    def on_connect(c: paho.Client, _u: object, _f: object, reason: Any, _p: object) -> None:
        if reason.is_failure:
            log.error("broker refused the bridge: %s", reason)
            return
        c.subscribe([(f, 1) for f in filters])

    def on_subscribe(c: paho.Client, _u: object, _m: int, reasons: Any, _p: object) -> None:
        refused = [f for f, r in zip(filters, reasons, strict=False) if r.is_failure]
        if refused:
            log.error("broker refused the subscriptions %s: check the lorawan account", refused)
        log.info("subscribed to %s", ", ".join(f for f in filters if f not in refused))

    def on_message(c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        try:
            out = bridge.handle(msg.topic, bytes(msg.payload))
        except Exception:  # a bug must not stop the bridge: log it, keep the others flowing
            log.exception("could not handle a message on %s", msg.topic)
            return
        for item in out:
            c.publish(item.topic, item.payload, qos=1)

    client.on_connect = on_connect
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600  # ChirpStack's events wait for a restarting bridge
    client.connect(host, port, keepalive=30, clean_start=False, properties=props)
    client.loop_start()
    try:
        stop.wait()
    finally:
        client.disconnect()
        client.loop_stop()
        log.info("stopped; %s", dict(bridge.counts))
