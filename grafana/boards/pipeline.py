"""Pipeline health: is every reading getting from the devices into InfluxDB, and how fast?

Reads the health figures the ingester writes every 10 s per worker (``ingest_stats``, tag
``worker``), the broker's ``$SYS`` counters (``broker_stats``), the edge agents' heartbeats
(``device_health``), device online state (``device_status``) and refused messages
(``deadletter``). The field names below are the ones the ingester's health report defines.
"""

from __future__ import annotations

from grafana.boards.common import new_board
from grafana.boards.overview import devices_by_state
from grafana.panels import PANELS
from grafana.queries import (
    BROKER_STATS,
    DEADLETTER,
    DEADLETTER_F,
    DEVICE_TYPE,
    HEALTH,
    INGEST_STATS,
    INTERVAL,
    TIME_FILTER,
    Fields,
    where,
)
from grafana.sdk import dashboard, influxql
from grafana.widgets import (
    Section,
    higher_is_worse,
    lay_out,
    stat_panel,
    table_panel,
    timeseries_panel,
)
from smartcity.city import CITY_NAME
from smartcity.contract import Health
from smartcity.storage import INGEST_STATS_FIELDS

UID = "cremona-pipeline"
#: The ingester reports every 10 s: no panel interval below that.
STATS_INTERVAL = "10s"
#: Seconds behind the devices before the pipeline is late, then too late.
LAG_WARN, LAG_BAD = 30.0, 300.0
LATENCY_WARN, LATENCY_BAD = 0.5, 2.0
MSG_RATE = "suffix: msg/s"
H = Fields(Health)


def per_worker(aggregate: str, field: str, outer: str = "sum") -> str:
    """A figure summed (or maxed) over workers, each worker's own value per interval first."""
    if field not in INGEST_STATS_FIELDS:
        raise ValueError(f"{INGEST_STATS} has no field {field!r}")
    inner = (
        f'SELECT {aggregate}("{field}") AS "v" FROM {INGEST_STATS} WHERE {TIME_FILTER} '
        f'GROUP BY time({INTERVAL}), "worker"'
    )
    return f'SELECT {outer}("v") FROM ({inner}) WHERE {TIME_FILTER} GROUP BY time({INTERVAL})'


def per_second(field: str) -> str:
    """A cumulative counter as a rate per second, summed over workers."""
    if field not in INGEST_STATS_FIELDS:
        raise ValueError(f"{INGEST_STATS} has no field {field!r}")
    inner = (
        f'SELECT non_negative_derivative(last("{field}"), 1s) AS "v" FROM {INGEST_STATS} '
        f'WHERE {TIME_FILTER} GROUP BY time({INTERVAL}), "worker"'
    )
    return f'SELECT sum("v") FROM ({inner}) WHERE {TIME_FILTER} GROUP BY time({INTERVAL})'


def broker(select: str) -> str:
    return f"SELECT {select} FROM {BROKER_STATS} WHERE {TIME_FILTER} GROUP BY time({INTERVAL})"


def ingest_section() -> Section:
    return Section(
        "Ingestione",
        [
            stat_panel(
                "Messaggi al secondo",
                "Messages received per second by all ingester workers.",
                influxql(per_worker("mean", "rate_messages")),
                unit=MSG_RATE,
            ),
            stat_panel(
                "Ritardo",
                "How far the newest stored reading is behind now (worst worker).",
                influxql(per_worker("max", "lag_seconds", outer="max")),
                unit="s",
                steps=higher_is_worse(LAG_WARN, LAG_BAD),
            ),
            stat_panel(
                "Coda in memoria",
                "Batches waiting in memory for InfluxDB, all workers.",
                influxql(per_worker("last", "queue_depth")),
                steps=higher_is_worse(2, 8),
            ),
            stat_panel(
                "Coda su disco",
                "Batches spooled to disk while InfluxDB was slow or down, all workers.",
                influxql(per_worker("last", "spool_depth")),
                steps=higher_is_worse(1, 100),
            ),
            timeseries_panel(
                "Messaggi ricevuti e punti scritti",
                "Messages received and points written per second, all workers.",
                influxql(per_worker("mean", "rate_messages"), "A", alias="messaggi"),
                influxql(per_second("points_written"), "B", alias="punti"),
                unit=MSG_RATE,
                min_interval=STATS_INTERVAL,
            ),
            timeseries_panel(
                "Messaggi non validi e tentativi",
                "Invalid (dead-lettered) messages and InfluxDB write retries per second.",
                influxql(per_second("invalid"), "A", alias="non validi"),
                influxql(per_second("retries"), "B", alias="tentativi"),
                unit=MSG_RATE,
                steps=higher_is_worse(0.1, 1),
                min_interval=STATS_INTERVAL,
            ),
            timeseries_panel(
                "Ritardo dai dispositivi",
                "Now minus the device timestamp of the newest reading written (worst worker).",
                influxql(per_worker("max", "lag_seconds", outer="max"), alias="ritardo"),
                unit="s",
                steps=higher_is_worse(LAG_WARN, LAG_BAD),
                min_interval=STATS_INTERVAL,
            ),
            timeseries_panel(
                "Latenza di scrittura",
                "How long InfluxDB took to accept the last batch (worst worker).",
                influxql(per_worker("max", "write_latency_seconds", outer="max"), alias="latenza"),
                unit="s",
                steps=higher_is_worse(LATENCY_WARN, LATENCY_BAD),
                min_interval=STATS_INTERVAL,
            ),
            timeseries_panel(
                "Code dell'ingester",
                "Batches waiting in memory and on disk, all workers.",
                influxql(per_worker("last", "queue_depth"), "A", alias="in memoria"),
                influxql(per_worker("last", "spool_depth"), "B", alias="su disco"),
                min_interval=STATS_INTERVAL,
            ),
            timeseries_panel(
                "Broker MQTT",
                "Messages the broker dropped (beyond its queue limits) per interval, clients "
                "connected and messages it holds.",
                influxql(broker('non_negative_difference(last("dropped"))'), "A", alias="scartati"),
                influxql(broker('last("clients_connected")'), "B", alias="client connessi"),
                influxql(broker('last("messages_stored")'), "C", alias="messaggi in coda"),
                steps=higher_is_worse(1, 100),
                min_interval=STATS_INTERVAL,
            ),
        ],
    )


def devices_section() -> Section:
    outbox = (
        f'SELECT sum("v") FROM (SELECT last({H.outboxDepth}) AS "v" FROM '
        f'{HEALTH} {where()} GROUP BY time({INTERVAL}), "device_id") WHERE {TIME_FILTER} '
        f"GROUP BY time({INTERVAL})"
    )
    return Section(
        "Dispositivi",
        [
            stat_panel(
                "In linea",
                "Devices whose last status is online.",
                influxql(devices_by_state(1)),
                steps=((None, "green"),),
            ),
            stat_panel(
                "Non in linea",
                "Devices whose last status is offline.",
                influxql(devices_by_state(0)),
                steps=higher_is_worse(1, 10),
            ),
            stat_panel(
                "Letture in attesa sugli agenti",
                "Readings waiting in the edge agents' outboxes (not yet acknowledged).",
                influxql(outbox),
                steps=higher_is_worse(1000, 100_000),
            ),
            stat_panel(
                "Letture perse sugli agenti",
                "Readings the edge agents dropped because their outbox was full, in the range.",
                influxql(
                    f'SELECT sum("v") FROM (SELECT spread({H.dropped}) AS "v" FROM '
                    f'{HEALTH} {where()} GROUP BY "device_id")'
                ),
                steps=higher_is_worse(1, 1),
            ),
            timeseries_panel(
                "Outbox degli agenti",
                "Readings waiting in the edge agents' outboxes over time.",
                influxql(outbox, alias="in attesa"),
            ),
            table_panel(
                "Stato degli agenti",
                "Each edge agent's last heartbeat: last error, version, uptime and outbox.",
                influxql(
                    f"SELECT {H.lastError}, {H.version}, {H.uptime}, {H.outboxDepth} FROM "
                    f"(SELECT last({H.lastError}) AS {H.lastError}, last({H.version}) AS "
                    f"{H.version}, last({H.uptime}) AS {H.uptime}, last({H.outboxDepth}) AS "
                    f"{H.outboxDepth} "
                    f'FROM {HEALTH} {where()} GROUP BY "device_id", "zone") '
                    'GROUP BY "device_id", "zone"',
                    result_format="table",
                ),
            ),
        ],
    )


def deadletter_section() -> Section:
    dead = where(DEVICE_TYPE, variables=False)  # dead letters have no zone: they may lack one
    return Section(
        "Messaggi rifiutati",
        [
            timeseries_panel(
                "Messaggi rifiutati per motivo",
                "Messages refused per interval, by reason code (see docs/protocol.md).",
                influxql(
                    f"SELECT count({DEADLETTER_F.reason}) FROM {DEADLETTER} {dead} "
                    f'GROUP BY time({INTERVAL}), "reason_code"',
                    alias="$tag_reason_code",
                ),
                bars=True,
                stack=True,
                steps=higher_is_worse(1, 10),
            ),
            table_panel(
                "Ultimi messaggi rifiutati",
                "The latest refused messages with the reason and the topic they came on.",
                influxql(
                    f"SELECT {DEADLETTER_F.reason}, {DEADLETTER_F.topic}, "
                    f"{DEADLETTER_F.payload_bytes} "
                    f"FROM {DEADLETTER} {dead} "
                    "ORDER BY time DESC LIMIT 50",
                    result_format="table",
                ),
            ),
        ],
    )


def build() -> dashboard.Dashboard:
    board = new_board(
        UID,
        f"{CITY_NAME} · Salute della pipeline",
        "Pipeline health for the platform team: ingest rate, invalid rate, lag, write latency, "
        "queues, broker drops, devices online and offline, edge outboxes, refused messages.",
        list(PANELS),
        ["pipeline"],
    )
    lay_out(board, [ingest_section(), devices_section(), deadletter_section()])
    return board
