"""The frame every board shares: time range, zone and device-type variables, links, tags."""

from __future__ import annotations

from collections.abc import Sequence

from grafana.queries import STATUS
from grafana.sdk import DATASOURCE, dashboard, dashboard_models
from smartcity.city import TIMEZONE

#: Tag on every board; the "Cremona" links menu lists the boards carrying it.
TAG = "cremona"
#: Where the API's public catalogue page answers (compose publishes it there); a hidden
#: dashboard constant, so a deployment elsewhere changes one variable, not every link.
CATALOGUE_URL = "http://localhost:8000"
ALL = "$__all"


def new_board(
    uid: str, title: str, description: str, device_types: Sequence[str], tags: Sequence[str]
) -> dashboard.Dashboard:
    """A board with the shared variables; ``device_types`` are the choices it offers."""
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG, *tags])
        .timezone(TIMEZONE)
        .time("now-6h", "now")
        .refresh("1m")
        .readonly()
        .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
        .with_variable(device_type_variable(device_types))
        .with_variable(zone_variable())
        .with_variable(dashboard.ConstantVariable("catalogue").value(CATALOGUE_URL))
        .links(
            [
                dashboard.DashboardLink("Cremona")
                .type(dashboard_models.DashboardLinkType.DASHBOARDS)
                .tags([TAG])
                .as_dropdown(True)
                .include_vars(True)
                .keep_time(True),
                dashboard.DashboardLink("Catalogo dei servizi")
                .type(dashboard_models.DashboardLinkType.LINK)
                .url("${catalogue}/")
                .tooltip("Cremona's catalogue of smart services, with live KPIs and open data")
                .icon("info")
                .target_blank(True),
            ]
        )
    )


def device_type_variable(device_types: Sequence[str]) -> dashboard.CustomVariable:
    return (
        dashboard.CustomVariable("device_type")
        .label("Tipo di dispositivo")
        .description("Device type (one per service)")
        .values(",".join(device_types))
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dashboard_models.VariableOption(text="All", value=ALL, selected=True))
    )


def zone_variable() -> dashboard.QueryVariable:
    return (
        dashboard.QueryVariable("zone")
        .label("Zona")
        .description("City zone (quartiere) the devices stand in")
        .datasource(DATASOURCE)
        .query(
            f'SHOW TAG VALUES FROM {STATUS} WITH KEY = "zone" '
            'WHERE "device_type" =~ /^$device_type$/'
        )
        .refresh(dashboard_models.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dashboard_models.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dashboard_models.VariableOption(text="All", value=ALL, selected=True))
    )
