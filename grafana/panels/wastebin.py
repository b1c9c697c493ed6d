"""Waste: fill levels by stream and zone, bins to collect, fire and overflow alarms, and the
separate-collection share against the city's 80 % target."""

from __future__ import annotations

from typing import get_args

from grafana.panels.base import AlertRule, ServicePanels, devices_in_fault
from grafana.queries import INTERVAL, Fields, eq, ne, quote, unit, where
from grafana.sdk import influxql
from grafana.widgets import (
    BAD,
    OK,
    WARN,
    Panel,
    Section,
    bargauge_panel,
    higher_is_worse,
    pie_panel,
    stat_panel,
    table_panel,
    timeseries_panel,
)
from smartcity.devices.wastebin import (
    FULL_LEVEL,
    BinAlarm,
    BinEmptied,
    Wastebin,
    WastebinReading,
    WasteKind,
)

M = quote(Wastebin.measurement())
EVENTS = quote(Wastebin.event_measurement())
F = Fields(WastebinReading, BinEmptied, BinAlarm, extra=("count", "waste_kind"))
BOARD_UID = "cremona-rifiuti"
#: Above this the bin overflows: bags end up on the pavement.
OVERFLOW_LEVEL = 0.95
#: Inside temperature that means smouldering waste even before a bin reports ``burning``.
HOT_CELSIUS = 50.0
LOW_BATTERY = 0.2
#: Italian names of the streams (Cremona's collection calendar), by the contract's codes.
STREAMS_IT: dict[str, str] = {
    "paper": "Carta",
    "glassAndCans": "Vetro e lattine",
    "plastic": "Plastica",
    "organic": "Organico",
    "green": "Verde",
    "residual": "Indifferenziato",
}
STATUS_COLOURS = {
    "ok": OK,
    "lidOpen": WARN,
    "moved": WARN,
    "dropped": WARN,
    "vandalized": BAD,
    "burning": "dark-red",
}
EMPTIED = eq('"kind"', "emptied")
ALARM = eq('"kind"', "alarm")


def last_per_bin(variables: bool = True) -> str:
    return (
        f'SELECT last({F.fillingLevel}) AS "fillingLevel", last({F.storedWasteKind}) AS '
        f'"storedWasteKind", last({F.status}) AS "status", last({F.batteryLevel}) AS '
        f'"batteryLevel" FROM {M} {where(variables=variables)} GROUP BY "device_id", "zone"'
    )


def collected(*conditions: str) -> str:
    """Volume collected in the range, in bins' worth (fill level just before emptying).

    Bins are taken to be of equal volume: the contract does not carry a bin's capacity yet.
    """
    return f"SELECT sum({F.collectedLevel}) FROM {EVENTS} {where(EMPTIED, *conditions)}"


def sections() -> list[Section]:
    fill = unit(WastebinReading, "fillingLevel")
    return [
        Section(
            "Riempimento",
            [
                stat_panel(
                    "Cassonetti traboccanti",
                    f"Bins at or above {OVERFLOW_LEVEL:.0%}: waste is likely left outside.",
                    influxql(
                        f'SELECT count("fillingLevel") FROM ({last_per_bin()}) '
                        f"WHERE {F.fillingLevel} >= {OVERFLOW_LEVEL}"
                    ),
                    steps=higher_is_worse(1, 3),
                ),
                bargauge_panel(
                    "Riempimento medio per zona",
                    "Mean fill level of the bins of each zone, by their latest reading.",
                    influxql(
                        f'SELECT mean("fillingLevel") FROM ({last_per_bin()}) GROUP BY "zone"',
                        alias="$tag_zone",
                    ),
                    unit=fill,
                    steps=higher_is_worse(0.6, FULL_LEVEL),
                    maximum=1,
                ),
                timeseries_panel(
                    "Riempimento per flusso",
                    "Mean fill level of the bins of each waste stream over time.",
                    *(
                        influxql(
                            f"SELECT mean({F.fillingLevel}) FROM {M} "
                            f"{where(eq(F.storedWasteKind, kind))} GROUP BY time({INTERVAL})",
                            ref_id=chr(ord("A") + i),
                            alias=STREAMS_IT[kind],
                        )
                        for i, kind in enumerate(get_args(WasteKind))
                    ),
                    unit=fill,
                    steps=higher_is_worse(0.6, FULL_LEVEL),
                    w=24,
                ),
                *maintenance(),
            ],
        ),
        Section(
            "Raccolta differenziata",
            [
                pie_panel(
                    "Raccolto per flusso",
                    "Waste collected in the time range per stream, in bins' worth.",
                    influxql(f'{collected()} GROUP BY "waste_kind"', alias="$tag_waste_kind"),
                ),
                timeseries_panel(
                    "Svuotamenti",
                    "Bins emptied per hour, by stream.",
                    influxql(
                        f"SELECT sum({F.count}) FROM {EVENTS} {where(EMPTIED)} "
                        'GROUP BY time(1h), "waste_kind"',
                        alias="$tag_waste_kind",
                    ),
                    bars=True,
                    stack=True,
                    w=8,
                ),
            ],
        ),
        Section(
            "Allarmi",
            [
                timeseries_panel(
                    "Temperatura massima",
                    "Highest inside temperature among the selected bins; a jump means fire.",
                    influxql(
                        f"SELECT max({F.temperature}) FROM {M} {where()} GROUP BY time({INTERVAL})"
                    ),
                    unit=unit(WastebinReading, "temperature"),
                    steps=higher_is_worse(HOT_CELSIUS - 10, HOT_CELSIUS),
                    w=18,
                ),
                timeseries_panel(
                    "Allarmi segnalati",
                    "Alarms raised by bins per hour, by kind (fire, lid open, vandalism...).",
                    influxql(
                        f"SELECT sum({F.count}) FROM {EVENTS} "
                        f"{where(ALARM, ne(F.status, 'ok'))} "
                        'GROUP BY time(1h), "status"',
                        alias="$tag_status",
                    ),
                    bars=True,
                    stack=True,
                    w=24,
                ),
            ],
        ),
    ]


def maintenance() -> list[Panel]:
    return [
        table_panel(
            "Cassonetti da svuotare o da controllare",
            f"Bins at or above {FULL_LEVEL:.0%}, in alarm, or with a battery under "
            f"{LOW_BATTERY:.0%}, by their latest reading.",
            influxql(
                'SELECT "fillingLevel", "storedWasteKind", "status", "batteryLevel" FROM '
                f"({last_per_bin()}) WHERE {F.fillingLevel} >= {FULL_LEVEL} OR "
                f"{ne(F.status, 'ok')} OR {F.batteryLevel} < {LOW_BATTERY} "
                'GROUP BY "device_id", "zone"',
                result_format="table",
            ),
            unit=unit(WastebinReading, "fillingLevel"),
            steps=higher_is_worse(FULL_LEVEL, OVERFLOW_LEVEL),
            colours=STATUS_COLOURS,
            w=24,
        )
    ]


def alerts() -> list[AlertRule]:
    window = int(3 * Wastebin.report_interval_s)
    per_bin = f"({last_per_bin(variables=False)})"
    return [
        AlertRule(
            uid="cremona-bin-full",
            title="Cassonetto pieno",
            summary=f"Bin {{{{ $labels.device_id }}}} in {{{{ $labels.zone }}}} is at or above "
            f"{FULL_LEVEL:.0%}: add it to the next collection round.",
            query=f'SELECT count("fillingLevel") FROM {per_bin} '
            f'WHERE {F.fillingLevel} >= {FULL_LEVEL} GROUP BY "device_id", "zone"',
            window_s=window,
            reducer="last",
            op="gt",
            threshold=0,
            severity="info",
            pending="10m",
            dashboard_uid=BOARD_UID,
        ),
        AlertRule(
            uid="cremona-bin-burning",
            title="Cassonetto in fiamme",
            summary="Bin {{ $labels.device_id }} in {{ $labels.zone }} reports a fire: call "
            "the fire brigade.",
            query=f'SELECT count("status") FROM {per_bin} '
            f'WHERE {eq(F.status, "burning")} GROUP BY "device_id", "zone"',
            window_s=window,
            reducer="last",
            op="gt",
            threshold=0,
            severity="critical",
            dashboard_uid=BOARD_UID,
        ),
    ]


def condition() -> str:
    """Bins whose latest reading reports an alarm: burning, lid open, dropped, moved,
    vandalized."""
    return devices_in_fault(M, F.status, ne('"v"', "ok"))


PANELS = ServicePanels(Wastebin, BOARD_UID, sections, maintenance, alerts, condition)
