"""EV charging stations: sessions arrive by day, charge to a target, and sometimes fault."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime

from simulators.base import Placement, SimulatedDevice, local_hour, to_ms
from smartcity.commands import CommandRejected
from smartcity.devices import Event, Reading
from smartcity.devices.base import Command
from smartcity.devices.evcharger import (
    Connector,
    ConnectorCommand,
    ConnectorStatus,
    Evcharger,
    EvchargerReading,
    SessionStarted,
    SessionStopped,
)

#: (max kW per connector, connectors): AC posts and DC fast chargers.
MODELS = ((22.0, 2), (11.0, 2), (50.0, 2), (7.4, 1))
FAULTS_PER_HOUR = 1 / (30 * 24)


@dataclass
class ConnectorState:
    connector_id: int
    max_kw: float
    status: ConnectorStatus = "Available"
    energy: float = 0.0
    power: float = 0.0
    target: float = 0.0
    delivered: float = 0.0
    started: datetime | None = None
    session: str = ""
    left: float = 0.0  # seconds left in Faulted / Unavailable
    enabled: bool = True


class SimulatedEvcharger(SimulatedDevice):
    device_type = Evcharger
    id_prefix = "ev"
    fleet_size = 20
    count_flag = "chargers"

    def __init__(self, placement: Placement, rng: random.Random, fault_rate: float = 1.0) -> None:
        super().__init__(placement, rng, fault_rate)
        max_kw, count = rng.choice(MODELS)
        self.connectors = [
            ConnectorState(i + 1, max_kw, energy=rng.uniform(500, 20_000)) for i in range(count)
        ]
        self.sessions = 0

    def arrivals_per_hour(self, now: datetime) -> float:
        hour = local_hour(now)
        return (
            0.05 + 0.35 * max(0.0, math.sin(math.pi * (hour - 7) / 14)) if 7 <= hour < 21 else 0.05
        )

    def step(self, now: datetime, dt: float) -> tuple[Reading, list[Event]]:
        events: list[Event] = []
        for c in self.connectors:
            events += self._advance(c, now, dt)
        reading = EvchargerReading(
            ts=to_ms(now),
            seq=self.seq,
            power=round(sum(c.power for c in self.connectors), 2),
            energy=round(sum(c.energy for c in self.connectors), 3),
            connectors=[
                Connector(
                    connectorId=c.connector_id,
                    status=c.status,
                    power=round(c.power, 2),
                    energy=round(c.energy, 3),
                )
                for c in self.connectors
            ],
        )
        return reading, events

    def _advance(self, c: ConnectorState, now: datetime, dt: float) -> list[Event]:
        c.energy += c.power * dt / 3600
        c.delivered += c.power * dt / 3600
        if not c.enabled:
            c.status, c.power = "Unavailable", 0.0
            return []
        if c.status in ("Faulted", "Unavailable"):
            c.left -= dt
            if c.left <= 0:
                c.status = "Available"
            return []
        if c.status == "Available":
            if self.chance(FAULTS_PER_HOUR * self.fault_rate, dt):
                c.status, c.left, c.power = "Faulted", self.rng.uniform(1800, 6 * 3600), 0.0
            elif self.chance(self.arrivals_per_hour(now), dt):
                self.sessions += 1
                c.status, c.started, c.delivered = "Preparing", now, 0.0
                c.session = f"{self.device_id}-{self.sessions}"
                c.target = self.rng.uniform(5.0, min(60.0, c.max_kw * 3))
                return [
                    SessionStarted(
                        ts=to_ms(now),
                        kind="sessionStart",
                        connectorId=c.connector_id,
                        sessionId=c.session,
                    )
                ]
            return []
        if c.status == "Preparing":
            c.status, c.power = "Charging", c.max_kw * self.rng.uniform(0.6, 1.0)
            return []
        if c.status == "Charging" and c.delivered >= c.target:
            c.status, c.power = "Finishing", 0.0
            return []
        if c.status == "Finishing":
            c.status = "Available"
            assert c.started is not None
            return [
                SessionStopped(
                    ts=to_ms(now),
                    kind="sessionStop",
                    connectorId=c.connector_id,
                    sessionId=c.session,
                    energy=round(c.delivered, 3),
                    duration=(now - c.started).total_seconds(),
                )
            ]
        return []

    def apply(self, command: Command) -> None:
        if not isinstance(command, ConnectorCommand):
            raise CommandRejected(f"a charging station cannot {type(command).__name__}")
        connectors = {c.connector_id: c for c in self.connectors}
        connector = connectors.get(command.connectorId)
        if connector is None:
            raise CommandRejected(
                f"connectorId {command.connectorId}: this station has connectors "
                f"{min(connectors)}-{max(connectors)}"
            )
        connector.enabled = command.enabled
