"""Alerts and maintenance: what fires now, and which devices need a visit."""

from __future__ import annotations

from typing import Any

from grafana.boards.common import new_board
from grafana.panels import PANELS
from grafana.queries import STATUS, STATUS_F, where
from grafana.sdk import cogbuilder, dashboard, dashboard_models, influxql
from grafana.widgets import BAD, Panel, Section, lay_out, table_panel
from smartcity.city import CITY_NAME

UID = "cremona-allarmi"


class AlertList(cogbuilder.Builder[dashboard_models.Panel]):
    """Grafana's built-in alert list panel (the SDK has no builder for it)."""

    def __init__(self, title: str, description: str, folder_uid: str) -> None:
        self.panel = dashboard_models.Panel(
            type_val="alertlist",
            title=title,
            description=description,
            options={
                "viewMode": "list",
                "groupMode": "default",
                "groupBy": [],
                "maxItems": 100,
                "sortOrder": 1,
                "dashboardAlerts": False,
                "alertName": "",
                "alertInstanceLabelFilter": "",
                "folder": {"uid": folder_uid},
                "showInstances": True,
                "stateFilter": {
                    "firing": True,
                    "pending": True,
                    "noData": False,
                    "normal": False,
                    "error": True,
                },
            },
        )

    def grid_pos(self, pos: dashboard_models.GridPos) -> AlertList:
        self.panel.grid_pos = pos
        return self

    def id(self, value: int) -> AlertList:
        self.panel.id_val = value
        return self

    def build(self) -> dashboard_models.Panel:
        return self.panel


def offline_devices() -> Panel:
    return table_panel(
        "Dispositivi non in linea",
        "Devices whose last status is offline: check power and network on site.",
        influxql(
            f"SELECT {STATUS_F.online} FROM (SELECT last({STATUS_F.online}) AS {STATUS_F.online} "
            f'FROM {STATUS} {where(time=False)} GROUP BY "device_id", "device_type", "zone") '
            f'WHERE {STATUS_F.online} = 0 GROUP BY "device_id", "device_type", "zone"',
            result_format="table",
        ),
        steps=((None, BAD), (1, "green")),
        w=24,
    )


def build(folder_uid: str) -> dashboard.Dashboard:
    board = new_board(
        UID,
        f"{CITY_NAME} · Allarmi e manutenzione",
        "Alerts firing now, and every device that needs a visit: faults, full or burning "
        "bins, faulted chargers, devices offline.",
        list(PANELS),
        ["allarmi"],
    )
    alert_list: Any = AlertList(
        "Allarmi attivi",
        "Alert rules firing or pending now (lamp failure, bin full or burning, charger "
        "faulted, device offline, ingest stalled).",
        folder_uid,
    )
    lay_out(
        board,
        [
            Section("Allarmi", [Panel(alert_list, 24, 8), offline_devices()]),
            *(
                Section(f"Manutenzione: {p.device.title_it}", p.maintenance())
                for p in PANELS.values()
            ),
        ],
    )
    return board
