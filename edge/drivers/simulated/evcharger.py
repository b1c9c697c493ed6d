"""A simulated charging station: connectors can be taken out of service and back."""

from __future__ import annotations

from edge.drivers.base import CommandRejected
from edge.drivers.simulated.base import SimulatedDriver
from simulators.evcharger import SimulatedEvcharger
from smartcity.devices.base import Command
from smartcity.devices.evcharger import ConnectorCommand, Evcharger


class SimulatedEvchargerDriver(SimulatedDriver):
    device_type = Evcharger
    sim = SimulatedEvcharger
    device: SimulatedEvcharger

    def apply(self, command: Command) -> None:
        if not isinstance(command, ConnectorCommand):
            raise CommandRejected(f"a charging station cannot {type(command).__name__}")
        connectors = {c.connector_id: c for c in self.device.connectors}
        connector = connectors.get(command.connectorId)
        if connector is None:
            raise CommandRejected(
                f"connectorId {command.connectorId}: this station has connectors "
                f"{min(connectors)}-{max(connectors)}"
            )
        connector.enabled = command.enabled
