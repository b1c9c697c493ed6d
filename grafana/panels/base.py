"""What a device type contributes to Grafana: KPIs, its own board, maintenance panels, alerts.

One module per device type fills in a :class:`ServicePanels` and ``panels/__init__.py`` lists
it; the city overview, the alerts board and the alert rules are assembled from all of them, so
a new device type is one module here (``tests/test_registry.py`` checks none is missing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from grafana.queries import where
from grafana.widgets import Panel, Section
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
