"""Public lighting: power, energy, dimming, failures, burning hours. The KPIs (lamps on and
failed, energy drawn and saved by dimming) are declared with the device type."""

from __future__ import annotations

from grafana.panels.base import AlertRule, ServicePanels, devices_in_fault
from grafana.queries import INTERVAL, TIME_FILTER, Fields, ne, quote, unit, where
from grafana.sdk import influxql
from grafana.widgets import (
    BAD,
    OK,
    WARN,
    Panel,
    Section,
    bargauge_panel,
    stat_panel,
    state_timeline_panel,
    table_panel,
    timeseries_panel,
)
from smartcity.devices.streetlight import LampStatusChanged, Streetlight, StreetlightReading

M = quote(Streetlight.measurement())
EVENTS = quote(Streetlight.event_measurement())
F = Fields(StreetlightReading, LampStatusChanged, extra=("count",))
BOARD_UID = "cremona-illuminazione"
#: Hours a reading stands for: readings are counted to get burning hours and energies.
HOURS_PER_READING = Streetlight.report_interval_s / 3600
#: Minimum panel interval: one report period, so per-lamp means never fall between readings.
MIN_INTERVAL = f"{int(Streetlight.report_interval_s)}s"
STATUS_COLOURS = {"ok": OK, "brokenLantern": WARN, "defectiveLamp": BAD, "columnIssue": BAD}
POWER_STATE_COLOURS = {"on": "yellow", "low": "orange", "off": "dark-blue"}


def last_status_per_lamp(variables: bool = True) -> str:
    return (
        f'SELECT last({F.status}) AS "status" FROM {M} {where(variables=variables)} '
        'GROUP BY "device_id", "zone"'
    )


def city_power() -> str:
    """Total power: each lamp's mean over the interval, summed (a plain sum would add up
    several readings of one lamp whenever the interval spans more than one report)."""
    inner = (
        f'SELECT mean({F.activePower}) AS "p" FROM {M} {where()} '
        f'GROUP BY time({INTERVAL}), "device_id"'
    )
    return f'SELECT sum("p") FROM ({inner}) WHERE {TIME_FILTER} GROUP BY time({INTERVAL})'


def energy_kwh(group: str = "") -> str:
    """Energy drawn in the range, from each lamp's meter (its lifetime kWh), summed."""
    inner = (
        f'SELECT spread({F.totalActiveEnergyImport}) AS "e" FROM {M} {where()} '
        f'GROUP BY "device_id", "zone"'
    )
    return f'SELECT sum("e") AS "energia" FROM ({inner}){" GROUP BY " + group if group else ""}'


def sections() -> list[Section]:
    watt = unit(StreetlightReading, "activePower")
    return [
        Section(
            "Consumi",
            [
                stat_panel(
                    "Potenza ora",
                    "Power drawn by all selected street lights now.",
                    influxql(city_power()),
                    unit=watt,
                ),
                timeseries_panel(
                    "Potenza per zona",
                    "Power drawn by the street lights of each zone.",
                    influxql(
                        f'SELECT sum("p") FROM (SELECT mean({F.activePower}) AS "p" FROM {M} '
                        f'{where()} GROUP BY time({INTERVAL}), "device_id", "zone") '
                        f'WHERE {TIME_FILTER} GROUP BY time({INTERVAL}), "zone"',
                        alias="$tag_zone",
                    ),
                    unit=watt,
                    stack=True,
                    min_interval=MIN_INTERVAL,
                ),
                bargauge_panel(
                    "Energia per zona",
                    "Energy drawn per zone in the time range, from the lamps' meters.",
                    influxql(energy_kwh('"zone"'), alias="$tag_zone"),
                    unit="kwatth",
                ),
            ],
        ),
        Section(
            "Regolazione del flusso",
            [
                timeseries_panel(
                    "Livello di regolazione medio",
                    "Mean dimming level of the lamps that are lit (1 = full output).",
                    influxql(
                        f"SELECT mean({F.illuminanceLevel}) FROM {M} "
                        f"{where(F.illuminanceLevel + ' > 0')} GROUP BY time({INTERVAL}), "
                        '"zone"',
                        alias="$tag_zone",
                    ),
                    unit=unit(StreetlightReading, "illuminanceLevel"),
                    min_interval=MIN_INTERVAL,
                ),
                timeseries_panel(
                    "Ore di accensione",
                    "Burning hours per zone: readings with the lamp drawing power, times "
                    "the reporting period.",
                    influxql(
                        f"SELECT count({F.activePower}) * {HOURS_PER_READING} FROM {M} "
                        f'{where(F.activePower + " > 0")} GROUP BY time(1h), "zone"',
                        alias="$tag_zone",
                    ),
                    unit="h",
                    bars=True,
                    stack=True,
                ),
                state_timeline_panel(
                    "Stato di accensione per lampione",
                    "Each street light's power state over time: on, dimmed (low) or off.",
                    influxql(
                        f"SELECT last({F.powerState}) FROM {M} {where()} "
                        f'GROUP BY time({INTERVAL}), "device_id"',
                        alias="$tag_device_id",
                    ),
                    colours=POWER_STATE_COLOURS,
                    h=10,
                ),
            ],
        ),
        Section(
            "Guasti",
            [
                timeseries_panel(
                    "Guasti segnalati",
                    "Failures reported per hour, by kind (events from the lamps).",
                    influxql(
                        f"SELECT sum({F.count}) FROM {EVENTS} "
                        f'{where(ne(F.status, "ok"))} GROUP BY time(1h), "status"',
                        alias="$tag_status",
                    ),
                    bars=True,
                    stack=True,
                    w=18,
                ),
                *maintenance(),
            ],
        ),
    ]


def maintenance() -> list[Panel]:
    return [
        table_panel(
            "Lampioni da riparare",
            "Street lights whose latest reading reports a fault, with the fault.",
            influxql(
                f'SELECT "status" FROM ({last_status_per_lamp()}) WHERE {ne(F.status, "ok")} '
                'GROUP BY "device_id", "zone"',
                result_format="table",
            ),
            colours=STATUS_COLOURS,
            w=24,
        )
    ]


def alerts() -> list[AlertRule]:
    return [
        AlertRule(
            uid="cremona-lamp-failure",
            title="Lampione guasto",
            summary="A street light reports a fault ({{ $labels.device_id }} in "
            "{{ $labels.zone }}): send maintenance.",
            query=f'SELECT count("status") FROM ({last_status_per_lamp(variables=False)}) '
            f'WHERE {ne(F.status, "ok")} GROUP BY "device_id", "zone"',
            window_s=int(3 * Streetlight.report_interval_s),
            reducer="last",
            op="gt",
            threshold=0,
            severity="warning",
            pending="5m",
            dashboard_uid=BOARD_UID,
        )
    ]


def condition() -> str:
    """Lamps whose latest reading reports a fault (lamp, column or lantern)."""
    return devices_in_fault(M, F.status, ne('"v"', "ok"))


PANELS = ServicePanels(Streetlight, BOARD_UID, sections, maintenance, alerts, condition)
