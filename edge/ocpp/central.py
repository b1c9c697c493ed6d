"""The OCPP 1.6J central system: chargers in over WebSocket, the contract out over MQTT.

Each charger connects to ``ws(s)://HOST:PORT/ocpp/{chargePointId}`` with the sub-protocol
``ocpp1.6`` and HTTP Basic credentials (security profile 1, or 2 over TLS). The handshake is
refused (401) for an id the registry does not know as a charger, a revoked one, or a wrong
password; a wrong password is counted and reported in the charger's health. What a charger
says becomes the contract (``edge.ocpp.meter`` for meter values) and waits in the gateway's
outbox (``edge.ocpp.store``) for the MQTT publisher (``edge.ocpp.publisher``), so chargers get
their answers whatever the broker does.

Bad input (a frame that is no OCPP message, an unknown action, a payload that fails the OCPP
1.6 JSON schema, values out of range) is answered with the CALLERROR OCPP 1.6 names and kept
as a dead-letter record with its reason; the connection and every other charger carry on.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import secrets
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from ocpp.exceptions import (
    FormationViolationError,
    FormatViolationError,
    NotSupportedError,
    OccurenceConstraintViolationError,
    OccurrenceConstraintViolationError,
    OCPPError,
    PropertyConstraintViolationError,
)
from ocpp.exceptions import (
    NotImplementedError as OcppNotImplemented,
)
from ocpp.messages import Call, unpack, validate_payload
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action, RegistrationStatus
from pydantic import ValidationError
from sqlalchemy.orm import Session
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from edge.ocpp.meter import BadValue, parse_time, reading, sample_values
from edge.ocpp.publisher import Publisher
from edge.ocpp.settings import OcppSettings
from edge.ocpp.store import Entry, Store
from smartcity import __version__, charger_auth, commands
from smartcity.broker_acl import OCPP_DEVICE_TYPE
from smartcity.contract import (
    DEVICE_ID_PATTERN,
    CommandResult,
    Health,
    Location,
    Status,
    describe,
    encode,
)
from smartcity.deadletter import cut_payload, cut_text, deadletter_line
from smartcity.devices.base import Command, check_device_clock
from smartcity.devices.evcharger import (
    MAX_CONNECTORS,
    ChangeConfigurationCommand,
    ConnectorCommand,
    ConnectorStatusChanged,
    EvchargerReading,
    GetConfigurationCommand,
    RemoteStartCommand,
    RemoteStopCommand,
    ResetCommand,
    SessionStarted,
    SessionStopped,
    TriggerCommand,
    UnlockCommand,
)
from smartcity.influx import InfluxWriter
from smartcity.registry.db import make_engine
from smartcity.registry.models import Device

log = logging.getLogger("smartcity.ocpp")
SUBPROTOCOL = "ocpp1.6"
PATH_PREFIX = "/ocpp/"
_DEVICE_ID_RE = re.compile(DEVICE_ID_PATTERN)
#: The unique id of a CALL, read from a frame too broken to parse (for its CALLERROR).
_CALL_ID_RE = re.compile(r'^\s*\[\s*2\s*,\s*"([^"\\]{1,36})"')
#: OCPP 1.6 spells two error codes its own way; the library raises the 2.0 names.
_OCPP16_ERRORS: dict[type[OCPPError], type[OCPPError]] = {
    FormatViolationError: FormationViolationError,
    OccurrenceConstraintViolationError: OccurenceConstraintViolationError,
}
#: A charger's answer to a command, as the command's result: accepted (with the answer as its
#: reason when it is not plain acceptance) or rejected.
_ACCEPTED = {"Accepted", "Unlocked"}
_ACCEPTED_LATER = {"Scheduled", "RebootRequired"}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def charge_point_id(path: str) -> str | None:
    """The charger's id from ``/ocpp/{chargePointId}``, if it is a valid device id."""
    if not path.startswith(PATH_PREFIX):
        return None
    cp_id = unquote(path[len(PATH_PREFIX) :].split("?")[0])
    return cp_id if _DEVICE_ID_RE.match(cp_id) else None


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        text = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = text.partition(":")
    return (user, password) if sep else None


def idtag_key(state_dir: Path) -> bytes:
    """The gateway's key for hashing idTags, made once and kept (owner-only) in its state."""
    path = state_dir / "idtag.key"
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


class Gateway:
    def __init__(self, settings: OcppSettings) -> None:
        self.settings = settings
        self.store = Store(settings.outbox_path, settings.outbox_max)
        # the outbox's writer: a connection of its own, used from a worker thread
        self.outbox = Store(settings.outbox_path, settings.outbox_max)
        self.pending: list[tuple[Entry, asyncio.Future[None]]] = []
        self.flusher: asyncio.Future[None] | None = None
        self.key = idtag_key(settings.state_dir)
        self.engine = make_engine(settings.registry_url)
        self.sessions: dict[str, ChargerSession] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.publisher = Publisher(settings, self._command_arrived)
        self.writer = InfluxWriter(settings, timeout=5) if settings.influx_deadletters else None
        self.tasks: set[asyncio.Task[None]] = set()
        self.port = settings.port

    # -- running --------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, ready: Callable[[int], None] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.store.mark_all_disconnected()
        self.publisher.start()
        tls = None
        if self.settings.cert_file is not None and self.settings.key_file is not None:
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls.load_cert_chain(self.settings.cert_file, self.settings.key_file)
        if self.writer is not None:
            self._background(self._ensure_database())
        try:
            async with serve(
                self._handle,
                self.settings.host,
                self.settings.port,
                subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                process_request=self._authenticate,
                ssl=tls,
            ) as server:
                self.port = next(iter(server.sockets)).getsockname()[1]
                log.info(
                    "OCPP central system listening",
                    extra={
                        "url": f"{'wss' if tls else 'ws'}://{self.settings.host}:{self.port}"
                        f"{PATH_PREFIX}<chargePointId>",
                        "outbox_depth": self.store.depth,
                    },
                )
                if ready is not None:
                    ready(self.port)
                watchdog = asyncio.create_task(self._watchdog())
                await stop.wait()
                watchdog.cancel()
                for session in list(self.sessions.values()):
                    session.went_offline("the central system stopped")
                server.close()
                # what is on its way into the outbox gets there before the publisher drains it
                if self.tasks:
                    await asyncio.wait(list(self.tasks), timeout=5)
        finally:
            self.publisher.stop.set()
            self.publisher.wake.set()
            await asyncio.to_thread(self.publisher.join, 30)
            for task in list(self.tasks):
                task.cancel()
            self.outbox.close()
            if self.writer is not None:
                await self.writer.aclose()
            self.store.close()
            self.engine.dispose()
            log.info("OCPP central system stopped")

    def _background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _ensure_database(self) -> None:
        assert self.writer is not None
        try:
            await self.writer.ensure_database(keep_trying=lambda: False)
        except Exception as exc:  # InfluxDB away: dead-letters are still published and logged
            log.warning("InfluxDB not reachable for dead-letters", extra={"error": str(exc)})

    async def _watchdog(self) -> None:
        """Report offline the chargers silent for ``offline_after`` heartbeat intervals."""
        limit = self.settings.offline_after * self.settings.heartbeat_interval
        while True:
            await asyncio.sleep(min(1.0, limit / 4))
            now = time.monotonic()
            for session in list(self.sessions.values()):
                if session.online and now - session.last_seen > limit:
                    session.went_offline(f"no message for {limit:g} s")

    # -- the handshake --------------------------------------------------------------------------

    async def _authenticate(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        cp_id = charge_point_id(request.path)
        if cp_id is None:
            return connection.respond(HTTPStatus.NOT_FOUND, "connect to /ocpp/<chargePointId>\n")
        given = basic_credentials(request.headers.get("Authorization"))
        # the registry read and the password hash off the event loop: other chargers go on
        device, refusal = await asyncio.to_thread(self._login, cp_id, given)
        if refusal is None:
            return None
        log.warning("charger refused", extra={"charge_point_id": cp_id, "reason": refusal})
        if refusal == "wrong password" and device is not None:
            count = self.store.count_wrong_password(cp_id)
            self.emit_health(cp_id, device.zone, f"refused login: wrong OCPP password ({count})")
        response = connection.respond(HTTPStatus.UNAUTHORIZED, "unauthorized\n")
        response.headers["WWW-Authenticate"] = 'Basic realm="OCPP", charset="UTF-8"'
        return response

    def _login(self, cp_id: str, given: tuple[str, str] | None) -> tuple[Device | None, str | None]:
        device = self._registered(cp_id)
        return device, self._refusal(cp_id, device, given)

    def _registered(self, cp_id: str) -> Device | None:
        with Session(self.engine, expire_on_commit=False) as session:
            return session.get(Device, cp_id)

    def _refusal(
        self, cp_id: str, device: Device | None, given: tuple[str, str] | None
    ) -> str | None:
        """Why the login is refused, or None to let the charger in."""
        if device is None or device.device_type != OCPP_DEVICE_TYPE:
            return "unknown charger"
        if device.revoked_at is not None:
            return "revoked"
        if device.ocpp_password_hash is None:
            return "no OCPP password provisioned (smartcity devices rotate)"
        if given is None or given[0] != cp_id:
            return "no credentials for this charge point id"
        if not charger_auth.verify_password(given[1], device.ocpp_password_hash):
            return "wrong password"
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        cp_id = charge_point_id(connection.request.path)
        if cp_id is None or connection.subprotocol != SUBPROTOCOL:
            await connection.close(1002, f"sub-protocol {SUBPROTOCOL} required")
            return
        device = await asyncio.to_thread(self._registered, cp_id)
        if device is None:
            await connection.close(1008, "unknown charger")
            return
        old = self.sessions.get(cp_id)
        if old is not None:
            await old.ws.close(1000, "replaced by a new connection")
        session = ChargerSession(self, device, connection)
        self.sessions[cp_id] = session
        log.info("charger connected", extra={"charge_point_id": cp_id})
        session.heard()
        try:
            await session.start()
        except ConnectionClosed:
            pass
        finally:
            session.connected = False
            if self.sessions.get(cp_id) is session:
                del self.sessions[cp_id]
                session.went_offline("disconnected")
            log.info("charger disconnected", extra={"charge_point_id": cp_id})

    # -- what goes out --------------------------------------------------------------------------

    def emit(
        self,
        device_id: str,
        zone: str | None,
        rows: list[tuple[str, bytes]],
        readings: list[dict[str, Any]] | None = None,
    ) -> None:
        """:meth:`persist` without waiting (status, health, results: nobody awaits an answer);
        still stored in the order emitted."""
        self._background(self.persist(device_id, zone, rows, readings))

    async def persist(
        self,
        device_id: str,
        zone: str | None,
        rows: list[tuple[str, bytes]],
        readings: list[dict[str, Any]] | None = None,
    ) -> None:
        """Into the outbox, on disk when this returns; then the publisher is woken. What all
        chargers say meanwhile is committed together (one fsync), off the event loop."""
        assert self.loop is not None
        done: asyncio.Future[None] = self.loop.create_future()
        self.pending.append(((device_id, zone, rows, readings or []), done))
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.ensure_future(self._flush())
        await done

    async def _flush(self) -> None:
        while self.pending:
            batch, self.pending = self.pending, []
            try:
                dropped = await asyncio.to_thread(self.outbox.put_many, [e for e, _ in batch])
            except Exception as exc:  # a full disk: the chargers get an InternalError
                log.error("outbox write failed", extra={"error": str(exc)})
                for _, done in batch:
                    done.set_exception(exc)
                continue
            for _, done in batch:
                done.set_result(None)
            if dropped:
                log.warning("outbox full: dropped the oldest messages", extra={"dropped": dropped})
            self.publisher.wake.set()

    def emit_health(self, device_id: str, zone: str | None, note: str, uptime: float = 0) -> None:
        health = Health(
            v=1,
            ts=datetime.now(UTC),
            zone=zone,
            version=f"smartcity-ocpp {__version__}",
            uptime=round(uptime, 3),
            outboxDepth=self.store.depth,
            dropped=self.store.dropped,
            lastError=note[:512],
        )
        self.emit(device_id, zone, [("health", encode(health))])

    def deadletter(self, cp_id: str, raw: str | bytes, code: str, reason: str) -> None:
        """Keep a refused frame: published on the dead-letter topic, and in InfluxDB."""
        payload = raw.encode() if isinstance(raw, str) else raw
        kept = cut_payload(payload)
        where = f"ocpp/{cp_id}"
        log.warning(
            "OCPP frame refused", extra={"charge_point_id": cp_id, "code": code, "reason": reason}
        )
        record = {
            "code": code,
            "reason": cut_text(reason),
            "topic": where,
            "payload": kept.decode("utf-8", errors="backslashreplace"),
            "payload_encoding": "utf-8",
            "payload_bytes": len(payload),
            "payload_truncated": len(kept) < len(payload),
            "received_at": time.time(),
        }
        self.emit(cp_id, None, [("deadletter", json.dumps(record).encode())])
        if self.writer is not None:
            line = deadletter_line(where, payload, code, reason, OCPP_DEVICE_TYPE, time.time_ns())
            self._background(self._write_deadletter(line))

    async def _write_deadletter(self, line: str) -> None:
        assert self.writer is not None
        try:
            await self.writer.write([line], keep_trying=lambda: False)
        except Exception as exc:  # InfluxDB away: the MQTT copy and the log remain
            log.warning("dead-letter not written to InfluxDB", extra={"error": str(exc)})

    # -- commands -------------------------------------------------------------------------------

    def _command_arrived(self, device_id: str, payload: bytes) -> None:
        """On the publisher's thread: hand the command over to the event loop."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._command, device_id, payload)

    def _command(self, device_id: str, payload: bytes) -> None:
        decoded = commands.decode(OCPP_DEVICE_TYPE, payload)
        if isinstance(decoded, CommandResult):
            self.emit(device_id, None, [("cmd_result", encode(decoded))])
            return
        session = self.sessions.get(device_id)
        if session is None:
            result = commands.rejected(
                decoded.id, "the charger is not connected to the OCPP central system"
            )
            self.emit(device_id, None, [("cmd_result", encode(result))])
            return
        self._background(session.carry_out(decoded))


def ocpp_call(command: Command) -> Any:
    """The OCPP call that carries a contract command out."""
    if isinstance(command, ConnectorCommand):
        kind = "Operative" if command.enabled else "Inoperative"
        return call.ChangeAvailability(connector_id=command.connectorId, type=kind)
    if isinstance(command, RemoteStartCommand):
        return call.RemoteStartTransaction(id_tag=command.idTag, connector_id=command.connectorId)
    if isinstance(command, RemoteStopCommand):
        return call.RemoteStopTransaction(transaction_id=command.transactionId)
    if isinstance(command, ResetCommand):
        return call.Reset(type=command.type)
    if isinstance(command, UnlockCommand):
        return call.UnlockConnector(connector_id=command.connectorId)
    if isinstance(command, TriggerCommand):
        return call.TriggerMessage(
            requested_message=command.requestedMessage, connector_id=command.connectorId
        )
    if isinstance(command, ChangeConfigurationCommand):
        return call.ChangeConfiguration(key=command.key, value=command.value)
    if isinstance(command, GetConfigurationCommand):
        return call.GetConfiguration(key=command.keys)
    raise ValueError(f"no OCPP call for {type(command).__name__}")


def command_result(command: Command, answer: Any) -> CommandResult:
    """The charger's answer to a command as the contract's result."""
    if isinstance(command, GetConfigurationCommand):
        values = {
            "configurationKey": answer.configuration_key or [],
            "unknownKey": answer.unknown_key or [],
        }
        return CommandResult(
            v=1,
            ts=datetime.now(UTC),
            id=command.id,
            status="accepted",
            reason=json.dumps(values, separators=(",", ":"))[:512],
        )
    status = str(answer.status)
    if status in _ACCEPTED:
        return commands.accepted(command.id)
    if status in _ACCEPTED_LATER:
        return CommandResult(
            v=1, ts=datetime.now(UTC), id=command.id, status="accepted", reason=status
        )
    return commands.rejected(command.id, f"the charger answered {status}")


class ChargerSession(ChargePoint):
    """One connected charger: the OCPP handlers and its connectors' last known state."""

    def __init__(self, gateway: Gateway, device: Device, ws: ServerConnection) -> None:
        super().__init__(device.device_id, ws, response_timeout=gateway.settings.command_timeout)
        self.gateway = gateway
        self.ws = ws
        self.device = device
        self.firmware = device.charger_firmware
        saved = gateway.store.charger_state(device.device_id)
        self.connectors: dict[int, dict[str, Any]] = {
            int(k): v for k, v in saved.get("connectors", {}).items()
        }
        self.station: dict[str, float] = saved.get("station", {})
        self.online = False  # as last reported in its status
        self.connected = True  # its WebSocket is open
        self.last_seen = time.monotonic()
        self.connected_at = time.monotonic()
        self.frame: str | bytes = ""

    @property
    def zone(self) -> str:
        return self.device.zone

    # -- presence -------------------------------------------------------------------------------

    def heard(self) -> None:
        """Any message: the charger is alive, and online again if it was reported offline."""
        self.last_seen = time.monotonic()
        if not self.online:
            self.online = True
            self._status("online")

    def went_offline(self, why: str) -> None:
        if self.online:
            self.online = False
            log.info("charger offline", extra={"charge_point_id": self.id, "reason": why})
            self._status("offline")
        self._save()

    def _status(self, state: Any) -> None:
        status = Status(
            v=1,
            state=state,
            ts=datetime.now(UTC),
            zone=self.zone,
            location=Location(lat=self.device.lat, lon=self.device.lon),
            firmware=self.firmware[:64] if self.firmware else None,
        )
        self.gateway.emit(self.id, self.zone, [("status", encode(status))])
        self._save()

    def _save(self) -> None:
        """The connectors' state and presence, for a restart and ``edge check``: written when
        the charger comes and goes, not per message (a write per message would wait on the
        outbox's commits and hold up every charger)."""
        state = {"connectors": self.connectors, "station": self.station}
        self.gateway.store.save_charger(self.id, state, self.connected, time.time())

    # -- frames ---------------------------------------------------------------------------------

    async def route_message(self, raw_msg: str | bytes) -> None:
        """Check a frame before the library routes it: a broken frame, an unknown action or a
        payload against the schema gets its CALLERROR here, and a dead-letter record."""
        self.heard()
        self.frame = raw_msg
        msg = None
        try:
            msg = unpack(raw_msg)
            if isinstance(msg, Call):
                if msg.action not in self.route_map:
                    known = msg.action in {a.value for a in Action}
                    raise (NotSupportedError if known else OcppNotImplemented)(
                        details={"cause": f"action {str(msg.action)[:64]!r} is not handled"}
                    )
                await validate_payload(msg, "1.6")
        except OCPPError as exc:
            error = _OCPP16_ERRORS.get(type(exc), type(exc))(details=exc.details)
            cause = exc.details.get("cause") if isinstance(exc.details, dict) else None
            reason = f"{error.code}: {cause or exc.description}"
            self.gateway.deadletter(self.id, raw_msg, error.code, reason)
            # a frame too broken to name its CALL is answered with the id "-1"
            unique_id = msg.unique_id if isinstance(msg, Call) else _frame_id(raw_msg)
            reply = Call(unique_id or "-1", "", {}).create_call_error(error)
            reply.error_details = {"cause": str(cause or "")[:255]}
            await self.ws.send(reply.to_json())
            return
        await super().route_message(raw_msg)

    def refuse(self, exc: Exception) -> OCPPError:
        """A handler's bad value: recorded as a dead-letter; raise what this returns, and the
        library answers the CALLERROR."""
        reason = describe(exc) if isinstance(exc, ValidationError) else str(exc)
        error = PropertyConstraintViolationError(details={"cause": reason[:255]})
        self.gateway.deadletter(self.id, self.frame, error.code, f"{error.code}: {reason}")
        return error

    def _metered(self) -> bool:
        return "energy" in self.station or any("energy" in c for c in self.connectors.values())

    def _reading(self, ts: datetime) -> dict[str, Any]:
        values = {"ts": ts.isoformat(), **reading(self.connectors, self.station)}
        # ranges and clock as the ingester will check them, or raise
        EvchargerReading.model_validate_json(json.dumps({**values, "seq": 0}))
        return values

    def _meter(self, connector_id: int, meter_value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not 0 <= connector_id <= MAX_CONNECTORS:
            raise BadValue(f"connectorId {connector_id} is not 0-{MAX_CONNECTORS}")
        readings = []
        for sampled in meter_value:
            ts = parse_time(sampled["timestamp"])
            values = sample_values(sampled["sampled_value"])
            target = (
                self.station
                if connector_id == 0
                else self.connectors.setdefault(connector_id, {"status": "Available", "power": 0.0})
            )
            target.update(values)
            readings.append(self._reading(ts))
        return readings

    # -- from the charger -----------------------------------------------------------------------

    @on(Action.boot_notification)
    async def on_boot(self, charge_point_vendor: str, charge_point_model: str, **info: Any) -> Any:
        self.firmware = info.get("firmware_version")
        await asyncio.to_thread(self._record_boot, charge_point_vendor, charge_point_model, info)
        self._status("online")
        return call_result.BootNotification(
            current_time=now_iso(),
            interval=self.gateway.settings.heartbeat_interval,
            status=RegistrationStatus.accepted,
        )

    def _record_boot(self, vendor: str, model: str, info: dict[str, Any]) -> None:
        with Session(self.gateway.engine) as session:
            device = session.get(Device, self.id)
            if device is None:
                return
            device.charger_vendor = vendor[:20]
            device.charger_model = model[:20]
            serial = info.get("charge_point_serial_number") or info.get("charge_box_serial_number")
            device.charger_serial = serial[:25] if serial else None
            device.charger_firmware = self.firmware[:50] if self.firmware else None
            device.booted_at = datetime.now(UTC)
            session.commit()

    @on(Action.heartbeat)
    def on_heartbeat(self) -> Any:
        return call_result.Heartbeat(current_time=now_iso())

    @on(Action.status_notification)
    async def on_status(
        self, connector_id: int, error_code: str, status: str, timestamp: str | None = None,
        **_: Any,
    ) -> Any:  # fmt: skip
        try:
            ts = parse_time(timestamp) if timestamp else datetime.now(UTC)
            event = ConnectorStatusChanged(
                ts=ts, kind="connectorStatus", connectorId=connector_id, status=status,
                errorCode=error_code,
            )  # fmt: skip
            readings = []
            if connector_id >= 1:
                self.connectors.setdefault(connector_id, {"power": 0.0})
                self.connectors[connector_id]["status"] = status
                if status not in ("Charging", "SuspendedEV", "SuspendedEVSE"):
                    self.connectors[connector_id]["power"] = 0.0
                # a reading needs the meter: before the charger's first meter value its
                # energy is unknown, and a made-up 0 would look like a meter reset
                if self._metered():
                    readings.append(self._reading(ts))
        except (BadValue, ValidationError) as exc:
            raise self.refuse(exc) from None
        await self.gateway.persist(self.id, self.zone, [("events", encode(event))], readings)
        return call_result.StatusNotification()

    @on(Action.meter_values)
    async def on_meter_values(
        self, connector_id: int, meter_value: list[dict[str, Any]], **_: Any
    ) -> Any:
        try:
            readings = self._meter(connector_id, meter_value)
        except (BadValue, ValidationError) as exc:
            raise self.refuse(exc) from None
        await self.gateway.persist(self.id, self.zone, [], readings)
        return call_result.MeterValues()

    @on(Action.authorize)
    def on_authorize(self, id_tag: str) -> Any:
        # the platform keeps no list of cards: a charger's own local list or the operator's
        # billing decides who may charge; the central system accepts every idTag
        return call_result.Authorize(id_tag_info={"status": "Accepted"})

    @on(Action.start_transaction)
    async def on_start(
        self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **_: Any
    ) -> Any:
        try:
            if not 1 <= connector_id <= MAX_CONNECTORS:
                raise BadValue(f"connectorId {connector_id} is not 1-{MAX_CONNECTORS}")
            if meter_start < 0:
                raise BadValue(f"meterStart {meter_start} is negative")
            ts = check_device_clock(parse_time(timestamp))
        except ValueError as exc:
            raise self.refuse(exc) from None
        connector = self.connectors.setdefault(connector_id, {"power": 0.0})
        connector.setdefault("energy", meter_start / 1000)  # the meter, if not known yet
        tag = charger_auth.id_tag_hash(id_tag, self.gateway.key)
        tx, new = self.gateway.store.start_transaction(self.id, connector_id, meter_start, ts, tag)
        if new:
            event = SessionStarted(
                ts=ts, kind="sessionStart", connectorId=connector_id,
                sessionId=self._session_id(tx.id), idTagHash=tag,
            )  # fmt: skip
            await self.gateway.persist(self.id, self.zone, [("events", encode(event))])
        return call_result.StartTransaction(
            transaction_id=tx.id, id_tag_info={"status": "Accepted"}
        )

    @on(Action.stop_transaction)
    async def on_stop(
        self, meter_stop: int, timestamp: str, transaction_id: int, reason: str | None = None,
        transaction_data: list[dict[str, Any]] | None = None, id_tag: str | None = None,
        **_: Any,
    ) -> Any:  # fmt: skip
        tx = self.gateway.store.transaction(transaction_id)
        try:
            ts = check_device_clock(parse_time(timestamp))
            connector = tx.connector_id if tx is not None else 1
            readings = self._meter(connector, transaction_data or [])
            event = None
            if tx is not None:
                event = SessionStopped(
                    ts=ts, kind="sessionStop", connectorId=tx.connector_id,
                    sessionId=self._session_id(tx.id),
                    energy=round(max(meter_stop - tx.meter_start, 0) / 1000, 4),
                    duration=max((ts - tx.started).total_seconds(), 0.0),
                    reason=reason or "Local",
                )  # fmt: skip
        except (ValueError, ValidationError) as exc:
            raise self.refuse(exc) from None
        rows: list[tuple[str, bytes]] = []
        if tx is None:
            log.warning(
                "StopTransaction for a transaction this central system never started",
                extra={"charge_point_id": self.id, "transaction_id": transaction_id},
            )
        elif event is not None and self.gateway.store.stop_transaction(tx.id, ts):
            rows.append(("events", encode(event)))
        await self.gateway.persist(self.id, self.zone, rows, readings)
        info = {"status": "Accepted"} if id_tag is not None else None
        return call_result.StopTransaction(id_tag_info=info)

    def _session_id(self, tx_id: int) -> str:
        name = f"{self.id}-{tx_id}"
        return name if len(name) <= 64 else f"tx-{tx_id}"

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, **_: Any) -> Any:
        # answered, not stored: the platform knows no vendor's extensions
        return call_result.DataTransfer(status="UnknownVendorId")

    @on(Action.firmware_status_notification)
    def on_firmware_status(self, status: str) -> Any:
        self._health(f"FirmwareStatusNotification: {status}")
        return call_result.FirmwareStatusNotification()

    @on(Action.diagnostics_status_notification)
    def on_diagnostics_status(self, status: str) -> Any:
        self._health(f"DiagnosticsStatusNotification: {status}")
        return call_result.DiagnosticsStatusNotification()

    def _health(self, note: str) -> None:
        uptime = time.monotonic() - self.connected_at
        self.gateway.emit_health(self.id, self.zone, note, uptime)

    # -- to the charger -------------------------------------------------------------------------

    async def carry_out(self, command: Command) -> None:
        """Send a command as its OCPP call; the answer becomes its result. Without an answer
        in time nothing is sent back, and the command expires."""
        try:
            answer = await self.call(ocpp_call(command), suppress=False)
            result = command_result(command, answer)
        except TimeoutError:
            log.warning(
                "the charger did not answer a command: it expires",
                extra={"charge_point_id": self.id, "id": command.id},
            )
            return
        except ConnectionClosed:
            log.warning("the charger left before answering", extra={"id": command.id})
            return
        except OCPPError as exc:
            result = commands.rejected(command.id, f"the charger answered CALLERROR {exc.code}")
        log.info(
            "command answered",
            extra={"charge_point_id": self.id, "id": command.id, "status": result.status},
        )
        self.gateway.emit(self.id, None, [("cmd_result", encode(result))])


def _frame_id(raw: str | bytes) -> str | None:
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    found = _CALL_ID_RE.match(text)
    return found.group(1) if found else None
