"""EV charging station (FIWARE ``EVChargingStation``), one OCPP 1.6 status per connector.

Serves plan line 1.c (electric mobility): availability per connector for drivers, energy and
sessions for the mobility office, faults for maintenance. A command takes a connector out of
service or back (OCPP ChangeAvailability).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, Field, model_validator

from smartcity.devices.base import (
    EVENT_COUNT_FIELD,
    STRICT,
    Command,
    DeviceType,
    Event,
    Reading,
    Row,
    Stored,
    measure,
    stored_fields,
)
from smartcity.kpis import Hours, Increase, Kpi, Latest, Names, Total, Where
from smartcity.lineprotocol import model_encoder

#: OCPP 1.6 ChargePointStatus for a connector.
ConnectorStatus = Literal[
    "Available",
    "Preparing",
    "Charging",
    "SuspendedEV",
    "SuspendedEVSE",
    "Finishing",
    "Reserved",
    "Unavailable",
    "Faulted",
]
MAX_CONNECTORS = 8
#: The station point's counts of connectors per status (field name -> status).
STATUS_COUNTS: dict[str, ConnectorStatus] = {
    "connectorsAvailable": "Available",
    "connectorsCharging": "Charging",
    "connectorsFaulted": "Faulted",
}


class Connector(BaseModel):
    model_config = STRICT

    connectorId: int = Field(ge=1, le=MAX_CONNECTORS, description="OCPP connector id (1-based).")
    status: ConnectorStatus = Field(description="OCPP 1.6 connector status.")
    power: float = measure("kW", 0.0, 400.0, "Power delivered now.")
    energy: float = measure(
        "kWh", 0.0, 1e9, "Lifetime energy delivered by this connector.", counter=True
    )


class EvchargerReading(Reading):
    power: float = measure("kW", 0.0, 3_200.0, "Power delivered now by the whole station.")
    energy: float = measure(
        "kWh", 0.0, 1e10, "Lifetime energy delivered by the station.", counter=True
    )
    connectors: list[Connector] = Field(min_length=1, max_length=MAX_CONNECTORS)

    @model_validator(mode="after")
    def _unique_connectors(self) -> EvchargerReading:
        ids = [c.connectorId for c in self.connectors]
        if len(set(ids)) != len(ids):
            raise ValueError("connectorId values must be unique within a reading")
        return self


class SessionStarted(Event):
    kind: Literal["sessionStart"]
    connectorId: int = Field(ge=1, le=MAX_CONNECTORS)
    sessionId: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    TAGS: ClassVar[dict[str, str]] = {"kind": "kind", "connectorId": "connector_id"}


class SessionStopped(Event):
    kind: Literal["sessionStop"]
    connectorId: int = Field(ge=1, le=MAX_CONNECTORS)
    sessionId: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    energy: float = measure("kWh", 0.0, 10_000.0, "Energy delivered in the session.")
    duration: float = measure("s", 0.0, 30 * 86_400.0, "Session length.")
    TAGS: ClassVar[dict[str, str]] = {"kind": "kind", "connectorId": "connector_id"}


class ConnectorCommand(Command):
    """Take a connector out of service (``Unavailable``) or give it back to drivers."""

    action: Literal["setConnector"]
    connectorId: int = Field(ge=1, le=MAX_CONNECTORS, description="OCPP connector id (1-based).")
    enabled: bool = Field(description="true = in service (Operative), false = Inoperative.")


class Evcharger(DeviceType):
    name = "evcharger"
    fiware_type = "EVChargingStation"
    title_it = "Ricarica veicoli elettrici"
    title_en = "EV charging"
    reading_model = EvchargerReading
    event_model = Annotated[SessionStarted | SessionStopped, Field(discriminator="kind")]
    command_model = Annotated[ConnectorCommand, Field(discriminator="action")]
    report_interval_s = 60.0

    @classmethod
    def connector_measurement(cls) -> str:
        return f"{cls.name}_connector"

    @classmethod
    def stored(cls) -> list[Stored]:
        """The station (with its connector counts per status) and each connector besides."""
        station, events = super().stored()
        station = station._replace(gauges=station.gauges + tuple(STATUS_COUNTS))
        connector = stored_fields(Connector, frozenset({"connectorId"}))
        return [station, connector._replace(measurement=cls.connector_measurement()), events]

    @classmethod
    def reading_rows(cls, reading: Reading) -> Iterator[Row]:
        """The station point (with ``seq`` and counts per status), then one row per connector."""
        assert isinstance(reading, EvchargerReading)
        (station,) = super().reading_rows(reading)
        statuses = [c.status for c in reading.connectors]
        counts = "".join(f",{f}={statuses.count(s)}i" for f, s in STATUS_COUNTS.items())
        yield Row(station.measurement, station.fields + counts, station.time_ns)
        encode = model_encoder(Connector, frozenset({"connectorId"}))
        for c in reading.connectors:
            yield Row(
                cls.connector_measurement(),
                encode(c),
                station.time_ns,
                (("connector_id", str(c.connectorId)),),
            )


#: Connectors per OCPP status, counted into each station point (``Evcharger.reading_rows``).
_CONNECTOR_COUNTS = ("connectorsAvailable", "connectorsCharging", "connectorsFaulted")
_R = Names(EvchargerReading, extra=_CONNECTOR_COUNTS)
_E = Names(SessionStopped, extra=(EVENT_COUNT_FIELD,))


def _connectors(status: str, field: str, **more: Any) -> Kpi:
    return Kpi(
        f"connectors_{status.lower()}", f"Prese {STATUS_IT[status]}",
        f"Connectors {status} (OCPP) by each station's latest reading.", "count",
        Latest(Evcharger.measurement(), field, "sum"), **more,
    )  # fmt: skip


STATUS_IT = {"Available": "libere", "Charging": "in ricarica", "Faulted": "guaste"}

Evcharger.kpis = (
    Kpi(
        "stations_reporting", "Colonnine che trasmettono",
        "Charging stations with a reading in the last minutes.", "count",
        Latest(Evcharger.measurement(), _R.power),
    ),
    _connectors("Available", _R.connectorsAvailable, headline=True),
    _connectors("Charging", _R.connectorsCharging, headline=True),
    _connectors("Faulted", _R.connectorsFaulted, headline=True, alarm=1),
    Kpi(
        "energy_delivered_24h", "Energia erogata (24 h)",
        "Energy delivered in the last 24 hours, from each station's meter.", "kWh",
        Increase(Evcharger.measurement(), _R.energy), Hours(24), decimals=3,
    ),
    Kpi(
        "sessions_24h", "Ricariche concluse (24 h)",
        "Charging sessions that ended in the last 24 hours.", "count",
        Total(Evcharger.event_measurement(), EVENT_COUNT_FIELD,
              (Where(_E.kind, "=", "sessionStop"),)),
        Hours(24),
    ),
)  # fmt: skip
