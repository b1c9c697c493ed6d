"""The city at a glance: every device on a map of Cremona, headline numbers per service, and
the way to each service's board and to the public catalogue."""

from __future__ import annotations

from string import ascii_uppercase

from grafana.boards.common import new_board
from grafana.panels import PANELS
from grafana.panels.base import (
    CONDITION,
    CONDITION_FAULT,
    CONDITION_OFFLINE,
    CONDITION_OK,
    DEVICE_TAGS,
    GROUP_BY_DEVICE,
)
from grafana.queries import STATUS, STATUS_F, where
from grafana.sdk import dashboard, dashboard_models, influxql, text
from grafana.widgets import BAD, OK, WARN, Panel, Section, geomap_panel, lay_out, stat_panel
from smartcity.city import CENTRE, CITY_NAME

UID = "cremona-panoramica"


#: How the map names and colours each condition.
CONDITIONS = {
    CONDITION_OK: ("In servizio", OK),
    CONDITION_OFFLINE: ("Non in linea", WARN),
    CONDITION_FAULT: ("Guasto o allarme", BAD),
}


def device_positions() -> str:
    """Each device's last known place, and offline as its condition (status is sent on
    connect and by the Last Will, so it is read over all time, not only the board's range)."""
    return (
        f'SELECT last("lat") AS "lat", last("lon") AS "lon", '
        f'{CONDITION_OFFLINE} - {CONDITION_OFFLINE} * last({STATUS_F.online}) AS "{CONDITION}" '
        f"FROM {STATUS} {where(time=False)} {GROUP_BY_DEVICE}"
    )


def one_row_per_device() -> list[dashboard_models.DataTransformerConfig]:
    """Grafana merges the position rows and each device type's fault rows into one table,
    then keeps one row per device: its position and its worst condition."""
    aggregate = {"lat": "lastNotNull", "lon": "lastNotNull", CONDITION: "max"}
    fields: dict[str, object] = {
        t: {"aggregations": [], "operation": "groupby"} for t in DEVICE_TAGS
    }
    fields |= {
        f: {"aggregations": [calc], "operation": "aggregate"} for f, calc in aggregate.items()
    }
    return [
        dashboard_models.DataTransformerConfig(id_val="merge", options={}),
        dashboard_models.DataTransformerConfig(id_val="groupBy", options={"fields": fields}),
        dashboard_models.DataTransformerConfig(
            id_val="organize",
            options={"renameByName": {f"{f} ({calc})": f for f, calc in aggregate.items()}},
        ),
    ]


def device_map() -> Panel:
    targets = [influxql(device_positions(), "A", result_format="table")]
    for ref, p in zip(ascii_uppercase[1:], PANELS.values(), strict=False):
        targets.append(influxql(p.condition(), ref, result_format="table"))
    return geomap_panel(
        f"Dispositivi a {CITY_NAME}",
        "Every device at its reported position, coloured by its condition: green in "
        "service, orange offline (its Last Will fired), red in fault or alarm (a failed lamp, "
        "a bin alarm such as fire, a charger with a faulted connector), which wins over "
        "offline. Hover a marker for its id, type and zone.",
        targets,
        centre=CENTRE,
        zoom=13,
        colour_field=CONDITION,
        # the lowest condition is the base colour, then each worse one from its value on
        steps=tuple(
            (None if value == CONDITION_OK else value, colour)
            for value, (_, colour) in sorted(CONDITIONS.items())
        ),
        transformations=one_row_per_device(),
        texts=CONDITIONS,
    )


def devices_by_state(online: int) -> str:
    return (
        f"SELECT count({STATUS_F.online}) FROM (SELECT last({STATUS_F.online}) AS "
        f'{STATUS_F.online} FROM {STATUS} {where(time=False)} GROUP BY "device_id") '
        f"WHERE {STATUS_F.online} = {online}"
    )


def online_panels() -> list[Panel]:
    return [
        stat_panel(
            "Dispositivi in linea",
            "Devices whose last status message says online.",
            influxql(devices_by_state(1)),
            steps=((None, OK),),
            w=4,
        ),
        stat_panel(
            "Dispositivi non in linea",
            "Devices whose last status is offline (their Last Will fired): no data from them.",
            influxql(devices_by_state(0)),
            steps=((None, OK), (1, BAD)),
            w=4,
        ),
    ]


def catalogue() -> Panel:
    lines = [
        f"- [{p.device.title_it}](/d/{p.board_uid}) — {p.device.title_en}" for p in PANELS.values()
    ]
    content = "\n".join(
        [
            "**Bacheche dei servizi** (service boards)",
            "",
            *lines,
            "",
            "[Catalogo dei servizi smart e dati aperti](${catalogue}/) — the public catalogue "
            "of Cremona's smart services, with live KPIs and open data.",
        ]
    )
    panel = (
        text.Panel()
        .title("Catalogo")
        .description("Links to each service's board and to the public catalogue.")
        .content(content)
    )
    return Panel(panel, 24, 5)


def build() -> dashboard.Dashboard:
    board = new_board(
        UID,
        f"{CITY_NAME} · Panoramica della città",
        "The whole city at a glance: every device on the map coloured by its condition, "
        "headline numbers for each service, and links to the service boards.",
        list(PANELS),
        ["panoramica"],
    )
    kpis = [panel for p in PANELS.values() for panel in p.kpis()]
    lay_out(
        board,
        [
            Section("Servizi", [*kpis, *online_panels()]),
            Section(
                "Mappa",
                [device_map()],
            ),
            Section("Catalogo", [catalogue()]),
        ],
    )
    return board
