"""One board per device type, from the sections its panels module declares."""

from __future__ import annotations

from grafana.boards.common import new_board
from grafana.panels import ServicePanels
from grafana.panels.base import recent_commands
from grafana.sdk import dashboard
from grafana.widgets import Section, lay_out
from smartcity.city import CITY_NAME


def build(service: ServicePanels) -> dashboard.Dashboard:
    device = service.device
    board = new_board(
        service.board_uid,
        f"{CITY_NAME} · {device.title_it}",
        f"{device.title_en} ({device.fiware_type} devices): what operators watch and act on.",
        [device.name],
        [device.name],
    )
    # the KPIs first, as the API computes them; every device type takes commands: the
    # operations room sees what was asked and answered
    sections = [service.kpi_section(), *service.sections()]
    lay_out(board, [*sections, Section("Comandi", [recent_commands(device)])])
    return board
