"""Simulated chargers over OCPP 1.6J (``smartcity simulate --via ocpp``), the ``ocpp``
package's charge point side, each charger a WebSocket of its own to the central system.

A charger boots (BootNotification), reports each connector's status, and then turns each of
its simulated readings into what a real charger sends: MeterValues per connector (energy in Wh,
power in W, stamped with the reading's own time), a StatusNotification when a connector's
status changes, StartTransaction and StopTransaction around each session. It answers the
central system's commands as a charger that accepts them would (ChangeAvailability puts the
simulated connector in or out of service).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.client import ClientConnection, connect

from smartcity.devices import Event, Reading
from smartcity.devices.evcharger import (
    ConnectorCommand,
    EvchargerReading,
    SessionStarted,
    SessionStopped,
)

log = logging.getLogger("smartcity.simulate")
SUBPROTOCOL = "ocpp1.6"


def ocpp_time(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def charger_url(base: str, charge_point_id: str) -> str:
    return f"{base.rstrip('/')}/{charge_point_id}"


async def open_charger(
    base_url: str, charge_point_id: str, password: str | None, **kwargs: Any
) -> ClientConnection:
    """A charger's WebSocket to the central system, HTTP Basic (security profile 1 or 2)."""
    headers = {}
    if password is not None:
        token = base64.b64encode(f"{charge_point_id}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return await connect(
        charger_url(base_url, charge_point_id),
        subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
        additional_headers=headers,
        **kwargs,
    )


class SimulatedChargePoint(ChargePoint):
    """A charge point that accepts what the central system asks (overridable per test)."""

    def __init__(self, charge_point_id: str, ws: ClientConnection, device: Any = None) -> None:
        super().__init__(charge_point_id, ws, response_timeout=30)
        self.ws = ws
        self.device = device
        self.answers: dict[str, str] = {}
        #: Reset calls this charger leaves unanswered (a charger that hangs).
        self.silent: set[str] = set()
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.transactions: dict[int, int] = {}  # connector -> transaction id
        self.statuses: dict[int, str] = {}
        self.meter_start: dict[int, int] = {}

    def _answer(self, action: str, default: str, **request: Any) -> str:
        self.received.append((action, request))
        return self.answers.get(action, default)

    @on(Action.change_availability)
    def on_change_availability(self, connector_id: int, type: str) -> Any:
        status = self._answer("ChangeAvailability", "Accepted", connector_id=connector_id)
        if status == "Accepted" and self.device is not None:
            self.device.apply(
                ConnectorCommand(
                    v=1, id="ocpp", action="setConnector", connectorId=connector_id,
                    enabled=type == "Operative",
                )
            )  # fmt: skip
        return call_result.ChangeAvailability(status=status)

    @on(Action.remote_start_transaction)
    def on_remote_start(self, id_tag: str, **kw: Any) -> Any:
        return call_result.RemoteStartTransaction(
            status=self._answer("RemoteStartTransaction", "Accepted", id_tag=id_tag, **kw)
        )

    @on(Action.remote_stop_transaction)
    def on_remote_stop(self, transaction_id: int) -> Any:
        return call_result.RemoteStopTransaction(
            status=self._answer("RemoteStopTransaction", "Accepted", transaction_id=transaction_id)
        )

    @on(Action.reset)
    async def on_reset(self, type: str) -> Any:
        if "Reset" in self.silent:
            await asyncio.sleep(3600)
        return call_result.Reset(status=self._answer("Reset", "Accepted", type=type))

    @on(Action.unlock_connector)
    def on_unlock(self, connector_id: int) -> Any:
        return call_result.UnlockConnector(
            status=self._answer("UnlockConnector", "Unlocked", connector_id=connector_id)
        )

    @on(Action.trigger_message)
    def on_trigger(self, requested_message: str, **kw: Any) -> Any:
        return call_result.TriggerMessage(
            status=self._answer("TriggerMessage", "Accepted", requested_message=requested_message)
        )

    @on(Action.change_configuration)
    def on_change_configuration(self, key: str, value: str) -> Any:
        return call_result.ChangeConfiguration(
            status=self._answer("ChangeConfiguration", "Accepted", key=key, value=value)
        )

    @on(Action.get_configuration)
    def on_get_configuration(self, key: list[str] | None = None) -> Any:
        self._answer("GetConfiguration", "Accepted", key=key)
        return call_result.GetConfiguration(
            configuration_key=[
                {"key": "MeterValueSampleInterval", "readonly": False, "value": "60"}
            ],
            unknown_key=[k for k in key or [] if k != "MeterValueSampleInterval"],
        )

    # -- what a simulated reading becomes -------------------------------------------------------

    async def boot(self, firmware: str = "simulator") -> Any:
        return await self.call(
            call.BootNotification(
                charge_point_vendor="smartcity", charge_point_model="simulated",
                charge_point_serial_number=self.id[:25], firmware_version=firmware,
            )
        )  # fmt: skip

    async def report(self, reading: Reading, events: list[Event]) -> None:
        """Send one simulated reading (and its events) as a real charger would."""
        assert isinstance(reading, EvchargerReading)
        when = ocpp_time(reading.ts)
        for event in events:
            if isinstance(event, SessionStarted):
                energy = self._energy_wh(reading, event.connectorId)
                answer = await self.call(
                    call.StartTransaction(
                        connector_id=event.connectorId, id_tag=f"card-{self.id}"[:20],
                        meter_start=energy, timestamp=ocpp_time(event.ts),
                    )
                )  # fmt: skip
                self.transactions[event.connectorId] = answer.transaction_id
        for c in reading.connectors:
            if self.statuses.get(c.connectorId) != c.status:
                self.statuses[c.connectorId] = c.status
                await self.call(
                    call.StatusNotification(
                        connector_id=c.connectorId, error_code="NoError", status=c.status,
                        timestamp=when,
                    )
                )  # fmt: skip
            await self.call(
                call.MeterValues(
                    connector_id=c.connectorId,
                    transaction_id=self.transactions.get(c.connectorId),
                    meter_value=[
                        {
                            "timestamp": when,
                            "sampledValue": [
                                {"value": f"{c.energy * 1000:.0f}", "unit": "Wh",
                                 "measurand": "Energy.Active.Import.Register"},
                                {"value": f"{c.power * 1000:.0f}", "unit": "W",
                                 "measurand": "Power.Active.Import"},
                            ],
                        }
                    ],
                )
            )  # fmt: skip
        for event in events:
            if isinstance(event, SessionStopped) and event.connectorId in self.transactions:
                await self.call(
                    call.StopTransaction(
                        meter_stop=self._energy_wh(reading, event.connectorId),
                        timestamp=ocpp_time(event.ts),
                        transaction_id=self.transactions.pop(event.connectorId),
                        reason="EVDisconnected",
                    )
                )  # fmt: skip

    @staticmethod
    def _energy_wh(reading: EvchargerReading, connector_id: int) -> int:
        for c in reading.connectors:
            if c.connectorId == connector_id:
                return round(c.energy * 1000)
        return 0


class OcppFleet:
    """The simulated chargers of a fleet, each over its own WebSocket, on one event loop
    thread; :meth:`send` hands a reading over from the simulator's thread."""

    def __init__(self, base_url: str, passwords: dict[str, str]) -> None:
        self.base_url = base_url
        self.passwords = passwords
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="ocpp", daemon=True)
        self.thread.start()
        self.points: dict[str, SimulatedChargePoint] = {}
        self.acked = 0
        self.failed = 0
        self.listening: list[asyncio.Future[Any]] = []
        self.pending: list[Any] = []  # readings on their way
        logging.getLogger("ocpp").setLevel(logging.WARNING)  # it logs every frame at info

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def connect(self, devices: list[Any], timeout: float = 60) -> None:
        """Connect and boot every charger (a refused one is logged and left out)."""
        self._run(self._connect_all(devices)).result(timeout)

    async def _connect_all(self, devices: list[Any]) -> None:
        await asyncio.gather(*(self._connect(d) for d in devices))

    async def _connect(self, device: Any) -> None:
        try:
            ws = await open_charger(
                self.base_url, device.device_id, self.passwords.get(device.device_id)
            )
        except Exception as exc:  # refused or unreachable: this charger stays out
            log.error(
                "charger could not connect",
                extra={"device_id": device.device_id, "error": str(exc)},
            )
            return
        point = SimulatedChargePoint(device.device_id, ws, device)
        self.points[device.device_id] = point
        self.listening.append(asyncio.ensure_future(point.start()))
        await point.boot()

    def send(self, device: Any, reading: Reading, events: list[Event]) -> None:
        point = self.points.get(device.device_id)
        if point is None:
            return
        future = self._run(point.report(reading, events))
        future.add_done_callback(self._done)
        self.pending.append(future)

    def _done(self, future: Any) -> None:
        if future.exception() is None:
            self.acked += 1
        else:
            self.failed += 1
            log.warning(
                "a charger's reading was not answered", extra={"error": str(future.exception())}
            )

    def close(self, timeout: float = 30) -> None:
        """Wait for the readings on their way to be answered, then disconnect."""
        import concurrent.futures

        concurrent.futures.wait(self.pending, timeout)

        async def _close() -> None:
            await asyncio.gather(*(p.ws.close() for p in self.points.values()))

        try:
            self._run(_close()).result(timeout)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout)
