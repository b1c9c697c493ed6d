"""What a device type contributes to Grafana: KPIs, its own board, maintenance panels, alerts.

One module per device type fills in a :class:`ServicePanels` and ``panels/__init__.py`` lists
it. The type's KPI panels are generated from its declarations (:func:`kpi_panel`). The city
overview, the alerts board and the alert rules are assembled from all of them, so a new device
type is one module here (``tests/test_registry.py`` checks none is missing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from grafana.queries import COMMAND_F, COMMANDS, eq, kpi_queries, kpi_unit, quote, where
from grafana.sdk import influxql
from grafana.widgets import (
    BAD,
    NEUTRAL,
    OK,
    Panel,
    Section,
    Steps,
    ratio,
    stat_panel,
    table_panel,
)
from smartcity.devices import DeviceType
from smartcity.kpis import Band, Kpi

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


def kpi_panel(kpi: Kpi) -> Panel:
    """A KPI as a big number, computed by its declaration's InfluxQL over its own window (the
    panel's relative time), so it shows what ``GET /v1/services`` gives for it."""
    targets = [influxql(q, ref_id) for q, ref_id in zip(kpi_queries(kpi), "AB", strict=False)]
    ranges: list[tuple[float | None, float | None, str]] = []
    if isinstance(kpi.measure, Band):  # the worst device's value, named by its band
        bounds = [None, *kpi.measure.edges, None]
        ranges = [(bounds[i], bounds[i + 1], t) for i, t in enumerate(kpi.measure.labels)]
        # Grafana takes the first range that matches, both ends included: the highest band
        # first, so a value on an edge is in the band that starts there, as the API says
        ranges.reverse()
    return stat_panel(
        kpi.title_it,
        f"{kpi.description} Over {kpi.window.words()}; the API's KPI {kpi.id}.",
        *(ratio(targets[0], targets[1]) if len(targets) == 2 else targets),
        unit=kpi_unit(kpi),
        steps=kpi_steps(kpi),
        decimals=kpi.decimals,
        time_from=kpi.window.relative(),
        ranges=ranges,
        w=4,
    )


def kpi_steps(kpi: Kpi) -> Steps:
    """Red on the wrong side of the target, or from the alarm value; else neutral."""
    if kpi.target is not None:
        good_above = kpi.target.op in (">=", ">")
        return ((None, BAD), (kpi.target.value, OK)) if good_above else (
            (None, OK), (kpi.target.value, BAD)
        )  # fmt: skip
    if kpi.alarm is not None:
        return ((None, OK), (kpi.alarm, BAD))
    return NEUTRAL


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
    #: The sections of the device type's own board.
    sections: Callable[[], list[Section]]
    #: Devices needing a visit, on the alerts and maintenance board.
    maintenance: Callable[[], list[Panel]]
    alerts: Callable[[], list[AlertRule]]
    #: InfluxQL for the city map: this type's devices in fault or alarm now
    #: (:func:`devices_in_fault`).
    condition: Callable[[], str]

    def kpis(self, headline: bool = True) -> list[Panel]:
        """The type's declared KPIs (``device.kpis``): the headline ones for the city
        overview, or all of them for the type's own board."""
        return [kpi_panel(k) for k in self.device.kpis if k.headline or not headline]

    def kpi_section(self) -> Section:
        return Section("Indicatori", self.kpis(headline=False))
