"""EV charging: connector availability, sessions, energy, and utilisation per station."""

from __future__ import annotations

from grafana.panels.base import AlertRule, ServicePanels, devices_in_fault
from grafana.queries import INTERVAL, TIME_FILTER, Fields, eq, quote, unit, where
from grafana.sdk import influxql
from grafana.widgets import (
    BAD,
    OK,
    WARN,
    Panel,
    Section,
    bargauge_panel,
    ratio,
    stat_panel,
    state_timeline_panel,
    table_panel,
    timeseries_panel,
)
from smartcity.devices.evcharger import (
    Connector,
    Evcharger,
    EvchargerReading,
    SessionStarted,
    SessionStopped,
)

M = quote(Evcharger.measurement())
CONNECTORS = f'"{Evcharger.connector_measurement()}"'
EVENTS = f'"{Evcharger.event_measurement()}"'
F = Fields(
    EvchargerReading,
    Connector,
    SessionStarted,
    SessionStopped,
    extra=("count", "connectorsAvailable", "connectorsCharging", "connectorsFaulted"),
)
BOARD_UID = "cremona-ricarica"
MIN_INTERVAL = f"{int(Evcharger.report_interval_s)}s"
#: OCPP 1.6 statuses, coloured for drivers' eyes: free, busy, out of order.
STATUS_COLOURS = {
    "Available": OK,
    "Preparing": "blue",
    "Charging": "blue",
    "SuspendedEV": "light-blue",
    "SuspendedEVSE": "light-blue",
    "Finishing": "blue",
    "Reserved": "purple",
    "Unavailable": WARN,
    "Faulted": BAD,
}
STOPPED = eq('"kind"', "sessionStop")
STARTED = eq('"kind"', "sessionStart")


def connectors_over_time(field: str) -> str:
    return (
        f'SELECT sum("n") FROM (SELECT last({field}) AS "n" FROM {M} {where()} '
        f'GROUP BY time({INTERVAL}), "device_id") WHERE {TIME_FILTER} GROUP BY time({INTERVAL})'
    )


def sections() -> list[Section]:
    energy = unit(SessionStopped, "energy")
    return [
        Section(
            "Disponibilità",
            [
                stat_panel(
                    "Sessioni avviate",
                    "Charging sessions started in the time range.",
                    influxql(f"SELECT sum({F.count}) FROM {EVENTS} {where(STARTED)}"),
                    w=6,
                ),
                timeseries_panel(
                    "Prese per stato",
                    "Connectors available, charging and faulted over time.",
                    *(
                        influxql(connectors_over_time(field), ref_id=ref, alias=name)
                        for ref, field, name in (
                            ("A", F.connectorsAvailable, "libere"),
                            ("B", F.connectorsCharging, "in ricarica"),
                            ("C", F.connectorsFaulted, "guaste"),
                        )
                    ),
                    min_interval=MIN_INTERVAL,
                    w=24,
                ),
                state_timeline_panel(
                    "Stato delle prese",
                    "Each connector's OCPP status over time, per station.",
                    influxql(
                        f"SELECT last({F.status}) FROM {CONNECTORS} {where()} "
                        f'GROUP BY time({INTERVAL}), "device_id", "connector_id"',
                        alias="$tag_device_id #$tag_connector_id",
                    ),
                    colours=STATUS_COLOURS,
                    h=10,
                ),
            ],
        ),
        Section(
            "Sessioni ed energia",
            [
                timeseries_panel(
                    "Sessioni per ora",
                    "Charging sessions started per hour.",
                    influxql(
                        f"SELECT sum({F.count}) FROM {EVENTS} {where(STARTED)} GROUP BY time(1h)",
                        alias="sessioni",
                    ),
                    bars=True,
                ),
                timeseries_panel(
                    "Energia per ora",
                    "Energy delivered per hour by the sessions that ended in it.",
                    influxql(
                        f"SELECT sum({F.energy}) FROM {EVENTS} {where(STOPPED)} GROUP BY time(1h)",
                        alias="energia",
                    ),
                    unit=energy,
                    bars=True,
                ),
                bargauge_panel(
                    "Energia per stazione",
                    "Energy delivered in the time range by each station.",
                    influxql(
                        f"SELECT sum({F.energy}) FROM {EVENTS} {where(STOPPED)} "
                        'GROUP BY "device_id"',
                        alias="$tag_device_id",
                    ),
                    unit=energy,
                ),
                bargauge_panel(
                    "Utilizzo per stazione",
                    "Share of connector time spent charging in the time range, per station.",
                    *ratio(
                        influxql(
                            f"SELECT count({F.power}) FROM {CONNECTORS} "
                            f'{where(eq(F.status, "Charging"))} GROUP BY "device_id"',
                            "A",
                        ),
                        influxql(
                            f"SELECT count({F.power}) FROM {CONNECTORS} {where()} "
                            'GROUP BY "device_id"',
                            "B",
                        ),
                    ),
                    unit="percentunit",
                    maximum=1,
                ),
            ],
        ),
        Section("Manutenzione", maintenance()),
    ]


def faulted_connectors(variables: bool = True) -> str:
    return (
        f'SELECT last({F.status}) AS "status" FROM {CONNECTORS} {where(variables=variables)} '
        'GROUP BY "device_id", "zone", "connector_id"'
    )


def maintenance() -> list[Panel]:
    return [
        table_panel(
            "Prese fuori servizio",
            "Connectors whose latest status is Faulted or Unavailable.",
            influxql(
                f'SELECT "status" FROM ({faulted_connectors()}) '
                f"WHERE {eq(F.status, 'Faulted')} OR {eq(F.status, 'Unavailable')} "
                'GROUP BY "device_id", "zone", "connector_id"',
                result_format="table",
            ),
            colours=STATUS_COLOURS,
            w=24,
        )
    ]


def alerts() -> list[AlertRule]:
    return [
        AlertRule(
            uid="cremona-charger-faulted",
            title="Colonnina guasta",
            summary="Charging station {{ $labels.device_id }} in {{ $labels.zone }} has a "
            "faulted connector (OCPP Faulted): send maintenance.",
            query=f"SELECT last({F.connectorsFaulted}) FROM {M} {where(variables=False)} "
            'GROUP BY "device_id", "zone"',
            window_s=int(3 * Evcharger.report_interval_s),
            reducer="last",
            op="gt",
            threshold=0,
            severity="warning",
            pending="2m",
            dashboard_uid=BOARD_UID,
        )
    ]


def condition() -> str:
    """Stations whose latest reading has a connector in OCPP ``Faulted``."""
    return devices_in_fault(M, F.connectorsFaulted, '"v" > 0')


PANELS = ServicePanels(Evcharger, BOARD_UID, sections, maintenance, alerts, condition)
