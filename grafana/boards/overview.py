"""The city at a glance: every device on a map of Cremona, headline numbers per service, and
the way to each service's board and to the public catalogue."""

from __future__ import annotations

from grafana.boards.common import new_board
from grafana.panels import PANELS
from grafana.queries import where
from grafana.sdk import dashboard, influxql, text
from grafana.widgets import BAD, OK, Panel, Section, geomap_panel, lay_out, stat_panel
from smartcity.city import CENTRE, CITY_NAME

UID = "cremona-panoramica"
STATUS = '"device_status"'


def device_positions() -> str:
    """Each device's last known place and online state (status is sent on connect and by
    the Last Will, so it is read over all time, not only the board's range)."""
    return (
        'SELECT last("lat") AS "lat", last("lon") AS "lon", last("online") AS "online" '
        f'FROM {STATUS} {where(time=False)} GROUP BY "device_id", "device_type", "zone"'
    )


def devices_by_state(online: int) -> str:
    return (
        f'SELECT count("online") FROM (SELECT last("online") AS "online" FROM {STATUS} '
        f'{where(time=False)} GROUP BY "device_id") WHERE "online" = {online}'
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
        "The whole city at a glance: every device on the map coloured by its online status, "
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
                [
                    geomap_panel(
                        f"Dispositivi a {CITY_NAME}",
                        "Every device at its reported position: green online, red offline. "
                        "Hover a marker for its id, type and zone.",
                        influxql(device_positions(), result_format="table"),
                        centre=CENTRE,
                        zoom=13,
                        colour_field="online",
                        steps=((None, BAD), (1, OK)),
                    )
                ],
            ),
            Section("Catalogo", [catalogue()]),
        ],
    )
    return board
