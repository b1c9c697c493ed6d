"""EV charging station (FIWARE ``EVChargingStation``), one OCPP 1.6 status per connector.

Serves plan line 1.c (electric mobility): availability per connector for drivers, energy and
sessions for the mobility office, faults for maintenance. Commands are the OCPP 1.6 central
system's (``smartcity ocpp`` sends each as the OCPP call of that name, docs/ocpp.md): a connector
out of service or back (ChangeAvailability), remote start and stop, reset, unlock, trigger a
message, change or read a configuration key. A simulated station carries out ``setConnector``
only and refuses the others with the reason.
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
    optional_measure,
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
#: OCPP 1.6 ChargePointErrorCode of a StatusNotification.
ConnectorErrorCode = Literal[
    "ConnectorLockFailure",
    "EVCommunicationError",
    "GroundFailure",
    "HighTemperature",
    "InternalError",
    "LocalListConflict",
    "NoError",
    "OtherError",
    "OverCurrentFailure",
    "OverVoltage",
    "PowerMeterFailure",
    "PowerSwitchFailure",
    "ReaderFailure",
    "ResetFailure",
    "UnderVoltage",
    "WeakSignal",
]
#: OCPP 1.6 StopTransaction reason (``Local`` when the charger gives none).
StopReason = Literal[
    "EmergencyStop",
    "EVDisconnected",
    "HardReset",
    "Local",
    "Other",
    "PowerLoss",
    "Reboot",
    "Remote",
    "SoftReset",
    "UnlockCommand",
    "DeAuthorized",
]
#: Messages a charger can be asked to send now (OCPP 1.6 TriggerMessage).
TriggerableMessage = Literal[
    "BootNotification",
    "DiagnosticsStatusNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "MeterValues",
    "StatusNotification",
]
MAX_CONNECTORS = 8
#: The station point's counts of connectors per status (field name -> status).
STATUS_COUNTS: dict[str, ConnectorStatus] = {
    "connectorsAvailable": "Available",
    "connectorsCharging": "Charging",
    "connectorsFaulted": "Faulted",
}
_SESSION_ID = r"^[A-Za-z0-9_.:-]{1,64}$"


class Connector(BaseModel):
    model_config = STRICT

    connectorId: int = Field(ge=1, le=MAX_CONNECTORS, description="OCPP connector id (1-based).")
    status: ConnectorStatus = Field(description="OCPP 1.6 connector status.")
    power: float = measure("kW", 0.0, 400.0, "Power delivered now.")
    energy: float = measure(
        "kWh", 0.0, 1e9, "Lifetime energy delivered by this connector.", counter=True
    )
    # measured by OCPP chargers that report them (MeterValues); absent otherwise
    current: float | None = optional_measure("A", 0.0, 1_000.0, "Current (OCPP Current.Import).")
    voltage: float | None = optional_measure("V", 0.0, 1_500.0, "Voltage (OCPP Voltage).")
    soc: float | None = optional_measure("%", 0.0, 100.0, "Vehicle's state of charge (OCPP SoC).")


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
    sessionId: str = Field(pattern=_SESSION_ID)
    idTagHash: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{32}$",
        description="Salted hash of the driver's OCPP idTag (never the idTag itself).",
    )
    TAGS: ClassVar[dict[str, str]] = {"kind": "kind", "connectorId": "connector_id"}


class SessionStopped(Event):
    kind: Literal["sessionStop"]
    connectorId: int = Field(ge=1, le=MAX_CONNECTORS)
    sessionId: str = Field(pattern=_SESSION_ID)
    energy: float = measure("kWh", 0.0, 10_000.0, "Energy delivered in the session.")
    duration: float = measure("s", 0.0, 30 * 86_400.0, "Session length.")
    reason: StopReason | None = Field(None, description="Why it stopped (OCPP 1.6 Reason).")
    TAGS: ClassVar[dict[str, str]] = {"kind": "kind", "connectorId": "connector_id"}


class ConnectorStatusChanged(Event):
    """A connector's OCPP status and error code, as the charger reported it
    (StatusNotification); connector 0 is the station as a whole."""

    kind: Literal["connectorStatus"]
    connectorId: int = Field(ge=0, le=MAX_CONNECTORS)
    status: ConnectorStatus
    errorCode: ConnectorErrorCode
    TAGS: ClassVar[dict[str, str]] = {
        "kind": "kind",
        "connectorId": "connector_id",
        "status": "status",
        "errorCode": "error_code",
    }


class ConnectorCommand(Command):
    """Take a connector out of service (``Unavailable``) or give it back to drivers."""

    action: Literal["setConnector"]
    connectorId: int = Field(ge=1, le=MAX_CONNECTORS, description="OCPP connector id (1-based).")
    enabled: bool = Field(description="true = in service (Operative), false = Inoperative.")


class RemoteStartCommand(Command):
    """Start a charging session for a driver's idTag (OCPP RemoteStartTransaction)."""

    action: Literal["remoteStart"]
    idTag: str = Field(min_length=1, max_length=20, description="The driver's OCPP idTag.")
    connectorId: int | None = Field(
        None, ge=1, le=MAX_CONNECTORS, description="Connector (default: the charger chooses)."
    )


class RemoteStopCommand(Command):
    """Stop a running session (OCPP RemoteStopTransaction)."""

    action: Literal["remoteStop"]
    transactionId: int = Field(ge=1, le=2**31 - 1, description="The session's transaction id.")


class ResetCommand(Command):
    """Restart the charger (OCPP Reset): Soft ends sessions first, Hard at once."""

    action: Literal["reset"]
    type: Literal["Soft", "Hard"] = Field(description="Soft or Hard.")


class UnlockCommand(Command):
    """Release a cable stuck in a connector (OCPP UnlockConnector)."""

    action: Literal["unlockConnector"]
    connectorId: int = Field(ge=1, le=MAX_CONNECTORS, description="OCPP connector id (1-based).")


class TriggerCommand(Command):
    """Ask the charger to send one message now (OCPP TriggerMessage)."""

    action: Literal["triggerMessage"]
    requestedMessage: TriggerableMessage = Field(description="The message to send now.")
    connectorId: int | None = Field(None, ge=0, le=MAX_CONNECTORS, description="Connector.")


class ChangeConfigurationCommand(Command):
    """Set one configuration key (OCPP ChangeConfiguration), e.g. MeterValueSampleInterval."""

    action: Literal["changeConfiguration"]
    key: str = Field(min_length=1, max_length=50, description="Configuration key.")
    value: str = Field(max_length=500, description="New value, as text.")


class GetConfigurationCommand(Command):
    """Read configuration keys (OCPP GetConfiguration); the values come back as the result's
    reason, as JSON."""

    action: Literal["getConfiguration"]
    keys: list[str] | None = Field(
        None, max_length=20, description="Keys to read (default: every key)."
    )


class Evcharger(DeviceType):
    name = "evcharger"
    fiware_type = "EVChargingStation"
    title_it = "Ricarica veicoli elettrici"
    title_en = "EV charging"
    reading_model = EvchargerReading
    event_model = Annotated[
        SessionStarted | SessionStopped | ConnectorStatusChanged, Field(discriminator="kind")
    ]
    command_model = Annotated[
        ConnectorCommand
        | RemoteStartCommand
        | RemoteStopCommand
        | ResetCommand
        | UnlockCommand
        | TriggerCommand
        | ChangeConfigurationCommand
        | GetConfigurationCommand,
        Field(discriminator="action"),
    ]
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
