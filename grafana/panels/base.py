"""What a device type contributes to Grafana: KPIs, its own board, maintenance panels, alerts.

One module per device type fills in a :class:`ServicePanels` and ``panels/__init__.py`` lists
it; the city overview, the alerts board and the alert rules are assembled from all of them, so
a new device type is one module here (``tests/test_registry.py`` checks none is missing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from grafana.queries import COMMAND_F, COMMANDS, eq, quote, where
from grafana.sdk import influxql
from grafana.widgets import Panel, Section, table_panel
from smartcity.devices import DeviceType

Reducer = Literal["last", "max", "min", "sum", "count", "mean"]

#: A device's condition on the city map, worst wins: in service, offline (its Last Will
#: fired, so its last reading may be stale), in fault or alarm (someone must go and see).
CONDITION_OK, CONDITION_OFFLINE, CONDITION_FAULT = 0, 1, 2
#: The field carrying it in every query the map merges.
CONDITION = "condizione"
#: The tags every such query groups by, so Grafana can merge their rows per device.
DEVICE_TAGS = ("device_id", "device_type", "zone")
GROUP_BY_DEVICE = "GROUP BY " + ", ".join(f'"{t}"' for t in DEVICE_TAGS)


def devices_in_fault(measurement: str, field: str, fault: str) -> str:
    """One row per device whose latest ``field`` in the range meets ``fault`` (written over
    ``"v"``), with ``condizione`` = :data:`CONDITION_FAULT`."""
    latest = f'SELECT last({field}) AS "v" FROM {measurement} {where()} {GROUP_BY_DEVICE}'
    return (
        f'SELECT {CONDITION_FAULT} * count("v") AS "{CONDITION}" FROM ({latest}) '
        f"WHERE {fault} {GROUP_BY_DEVICE}"
    )


def recent_commands(device: type[DeviceType]) -> Panel:
    """The latest commands to the board's devices and their answers, one row each: ``sent``
    when the API or ``smartcity command`` published one, ``applied`` or ``rejected`` (with the
    device's reason) when the device answered. A command with no answer within the API's
    ``--command-timeout`` is expired: ``GET /v1/devices/{id}/commands`` says so."""
    f = COMMAND_F
    this_type = eq(quote("device_type"), device.name)  # the board's variable offers only it
    columns = ", ".join(('"device_id"', f.state, f.command_id, f.name, f.args, f.actor, f.reason))
    return table_panel(
        "Comandi recenti",
        "Commands sent to these devices in the time range, newest first: sent (by whom, with "
        "what arguments), then applied or rejected with the device's reason. No answer within "
        "the API's command timeout means expired (GET /v1/devices/{id}/commands).",
        influxql(
            f"SELECT {columns} FROM {COMMANDS} {where(this_type)} ORDER BY time DESC LIMIT 50",
            result_format="table",
        ),
        colours={"applied": "green", "rejected": "red", "sent": "blue"},
        w=24,
    )


@dataclass(frozen=True)
class AlertRule:
    """A Grafana-managed alert: an InfluxQL query, reduced per series, against a threshold.

    Each series (one per device, from ``GROUP BY "device_id"``) becomes its own alert instance
    with the series' tags as labels, so a notification names the lamp or bin to go and see.
    """

    uid: str
    title: str  # Italian, as operators see it
    summary: str  # English, what happened and what to do
    query: str  # InfluxQL; ``$timeFilter`` covers the last ``window_s`` seconds
    window_s: int
    reducer: Reducer
    op: Literal["gt", "lt"]
    threshold: float
    severity: Literal["critical", "warning", "info"]
    #: How long the condition must hold before the alert fires.
    pending: str = "0s"
    #: What a query with no series means: "OK" when only faulty devices return a series.
    no_data: Literal["OK", "Alerting", "NoData"] = "OK"
    dashboard_uid: str = ""
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ServicePanels:
    """Everything Grafana shows about one device type."""

    device: type[DeviceType]
    #: Uid of the device type's own board (stable: links and bookmarks rely on it).
    board_uid: str
    #: Headline numbers on the city overview.
    kpis: Callable[[], list[Panel]]
    #: The sections of the device type's own board.
    sections: Callable[[], list[Section]]
    #: Devices needing a visit, on the alerts and maintenance board.
    maintenance: Callable[[], list[Panel]]
    alerts: Callable[[], list[AlertRule]]
    #: InfluxQL for the city map: this type's devices in fault or alarm now
    #: (:func:`devices_in_fault`).
    condition: Callable[[], str]
