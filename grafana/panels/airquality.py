"""Air quality: the stations on a map by European Air Quality Index band, each pollutant's
series against its EU limit, and stations to repair. The KPI row (PM10 days and NO2 hours over
the limits, PM2.5 mean, worst band) is generated from the type's declarations.

The limits and the index bands come from the device type (``smartcity.devices.airquality``),
the same constants the API's alerts use.
"""

from __future__ import annotations

from grafana.panels.base import GROUP_BY_DEVICE, AlertRule, ServicePanels, devices_in_fault
from grafana.queries import INTERVAL, STATUS, Fields, eq, literal, ne, quote, unit, where
from grafana.sdk import dashboard_models, influxql
from grafana.widgets import (
    OK,
    Panel,
    Section,
    Steps,
    geomap_panel,
    table_panel,
    timeseries_panel,
)
from smartcity.city import CENTRE
from smartcity.devices.airquality import (
    EAQI_BANDS,
    EAQI_BANDS_IT,
    EAQI_FIELD,
    NO2_HOURLY_LIMIT,
    O3_INFORMATION_THRESHOLD,
    PM10_DAILY_LIMIT,
    PM25_ANNUAL_LIMIT,
    Airquality,
    AirqualityReading,
    StationStatusChanged,
)

M = quote(Airquality.measurement())
F = Fields(AirqualityReading, StationStatusChanged, extra=(EAQI_FIELD,))
BOARD_UID = "cremona-aria"
THIS_TYPE = eq(quote("device_type"), Airquality.name)
#: The EEA's colours for the index bands, best first, with Italian names.
BAND_TEXTS: dict[int, tuple[str, str]] = {
    i + 1: (name, colour)
    for i, (name, colour) in enumerate(
        zip(
            EAQI_BANDS_IT,
            ("#50F0E6", "#50CCAA", "#F0E641", "#FF5050", "#960032", "#7D2181"),
            strict=True,
        )
    )
}
assert len(BAND_TEXTS) == len(EAQI_BANDS)
BAND_STEPS: Steps = tuple(
    (None if band == 1 else band, colour) for band, (_, colour) in BAND_TEXTS.items()
)
#: Per pollutant: Italian name, the limit line drawn on its series (the law's, in its unit).
#: CO's is the 10 mg/m³ maximum daily 8-hour mean of Directive 2008/50/EC, Annex XI.
SERIES = {
    "pm10": ("PM10", PM10_DAILY_LIMIT),
    "pm25": ("PM2.5", PM25_ANNUAL_LIMIT),
    "no2": ("Biossido di azoto (NO2)", NO2_HOURLY_LIMIT),
    "o3": ("Ozono (O3)", O3_INFORMATION_THRESHOLD),
    "co": ("Monossido di carbonio (CO)", 10.0),
}


def latest_band(variables: bool = True) -> str:
    return (
        f'SELECT last({F.eaqiBand}) AS "band" FROM {M} {where(variables=variables)} '
        f"{GROUP_BY_DEVICE}"
    )


def station_map() -> Panel:
    positions = (
        f'SELECT last("lat") AS "lat", last("lon") AS "lon" FROM {STATUS} '
        f"{where(THIS_TYPE, time=False)} {GROUP_BY_DEVICE}"
    )
    aggregate = {"lat": "lastNotNull", "lon": "lastNotNull", "band": "lastNotNull"}
    fields: dict[str, object] = {"device_id": {"aggregations": [], "operation": "groupby"}}
    fields |= {f: {"aggregations": [c], "operation": "aggregate"} for f, c in aggregate.items()}
    return geomap_panel(
        "Centraline per indice di qualità dell'aria",
        "Each station at its reported position, coloured by the European Air Quality Index "
        "band of its latest reading in the range (EEA bands: its worst pollutant's). Hover a "
        "marker for the station and its band.",
        [
            influxql(positions, "A", result_format="table"),
            influxql(latest_band(), "B", result_format="table"),
        ],
        centre=CENTRE,
        zoom=13,
        colour_field="band",
        steps=BAND_STEPS,
        transformations=[
            dashboard_models.DataTransformerConfig(id_val="merge", options={}),
            dashboard_models.DataTransformerConfig(id_val="groupBy", options={"fields": fields}),
            dashboard_models.DataTransformerConfig(
                id_val="organize",
                options={"renameByName": {f"{f} ({c})": f for f, c in aggregate.items()}},
            ),
        ],
        texts=BAND_TEXTS,
    )


def pollutant_series(field: str) -> Panel:
    title, limit = SERIES[field]
    return timeseries_panel(
        title,
        f"Mean per station over time; the line is the EU limit ({limit:g} "
        f"{'mg/m³' if field == 'co' else 'µg/m³'}).",
        influxql(
            f"SELECT mean({quote(field)}) FROM {M} {where()} "
            f'GROUP BY time({INTERVAL}), "device_id"',
            alias="$tag_device_id",
        ),
        unit=unit(AirqualityReading, field),
        steps=((None, OK), (limit, "red")),
        w=12,
    )


def sections() -> list[Section]:
    return [
        Section(
            "Mappa",
            [station_map()],
        ),
        Section("Inquinanti", [pollutant_series(f) for f in SERIES]),
        Section("Manutenzione", maintenance()),
    ]


def maintenance() -> list[Panel]:
    latest = f'SELECT last({F.status}) AS "status" FROM {M} {where()} GROUP BY "device_id", "zone"'
    return [
        table_panel(
            "Centraline da controllare",
            "Stations whose latest reading says a sensor failed or a calibration is running.",
            influxql(
                f'SELECT "status" FROM ({latest}) WHERE {ne(F.status, "ok")} '
                'GROUP BY "device_id", "zone"',
                result_format="table",
            ),
            colours={"sensorFault": "red", "calibrating": "orange"},
            w=24,
        )
    ]


def alerts() -> list[AlertRule]:
    def over(uid: str, title: str, field: str, limit: float, window_s: int, what: str) -> AlertRule:
        return AlertRule(
            uid=uid,
            title=title,
            summary=f"Station {{{{ $labels.device_id }}}} in {{{{ $labels.zone }}}}: {what}.",
            query=f"SELECT mean({quote(field)}) FROM {M} {where(variables=False)} "
            'GROUP BY "device_id", "zone"',
            window_s=window_s,
            reducer="last",
            op="gt",
            threshold=limit,
            severity="warning",
            dashboard_uid=BOARD_UID,
        )

    per_station = (
        f'SELECT last({F.status}) AS "v" FROM {M} {where(variables=False)} '
        'GROUP BY "device_id", "zone"'
    )
    return [
        over("cremona-air-pm10", "PM10 oltre il limite giornaliero", "pm10", PM10_DAILY_LIMIT,
             86_400, f"PM10 mean over the last 24 hours is over {PM10_DAILY_LIMIT:g} µg/m³ "
             "(EU daily limit): warn the public and check the traffic measures"),
        over("cremona-air-no2", "NO2 oltre il limite orario", "no2", NO2_HOURLY_LIMIT, 3_600,
             f"NO2 mean over the last hour is over {NO2_HOURLY_LIMIT:g} µg/m³ (EU hourly limit)"),
        over("cremona-air-o3", "Ozono oltre la soglia di informazione", "o3",
             O3_INFORMATION_THRESHOLD, 3_600, "ozone mean over the last hour is over "
             f"{O3_INFORMATION_THRESHOLD:g} µg/m³ (EU information threshold): inform the public"),
        AlertRule(
            uid="cremona-air-station-fault",
            title="Centralina guasta",
            summary="Air-quality station {{ $labels.device_id }} in {{ $labels.zone }} reports "
            "a sensor fault: send maintenance.",
            query=f'SELECT count("v") FROM ({per_station}) WHERE "v" = {literal("sensorFault")} '
            'GROUP BY "device_id", "zone"',
            window_s=int(3 * Airquality.report_interval_s),
            reducer="last",
            op="gt",
            threshold=0,
            severity="warning",
            dashboard_uid=BOARD_UID,
        ),
    ]  # fmt: skip


def condition() -> str:
    """Stations whose latest reading reports a sensor fault."""
    return devices_in_fault(M, F.status, eq('"v"', "sensorFault"))


PANELS = ServicePanels(Airquality, BOARD_UID, sections, maintenance, alerts, condition)
