"""Every measurement, tag and field name the platform stores beside the device types' own.

A device type's measurements and fields are declared in its module under ``smartcity.devices``;
the names here are the ones every type shares (status, health, refusals) and the pipeline's own
health figures. The ingester writes them, the API and the Grafana boards read them: each imports
the name from here, so a rename is one edit and a typo is an import error, not an empty panel.
"""

from __future__ import annotations

#: Refused messages, one point each, with the reason (tags ``reason_code``, ``device_type``).
DEADLETTER_MEASUREMENT = "deadletter"
DEADLETTER_TAGS = ("reason_code", "device_type")
DEADLETTER_FIELDS = ("reason", "topic", "payload", "payload_bytes", "payload_truncated")
#: Online/offline state and place of each device (the ``status`` channel).
STATUS_MEASUREMENT = "device_status"
STATUS_FIELDS = ("state", "online", "lat", "lon", "firmware")
#: Edge agents' heartbeats (the ``health`` channel); fields from ``smartcity.contract.Health``.
HEALTH_MEASUREMENT = "device_health"
#: One point (count=1) per message from a device the registry does not know.
UNREGISTERED_MEASUREMENT = "device_unregistered"

#: The tags every device point carries, in sorted order (as InfluxDB keys them).
DEVICE_TAGS = ("device_id", "device_type", "zone")
#: ``zone`` of a device that sent none and is not in the registry.
UNKNOWN_ZONE = "unknown"

#: The ingester's health figures, a point per worker (tag ``worker``) every ``stats_interval``.
INGEST_STATS_MEASUREMENT = "ingest_stats"
INGEST_STATS_TAG = "worker"
INGEST_STATS_FIELDS = (
    "messages_received",
    "points_written",
    "invalid",
    "retries",
    "queue_depth",
    "spool_depth",
    "lag_seconds",
    "write_latency_seconds",
    "rate_messages",
)
#: Mosquitto's ``$SYS`` counters, copied by the ingester.
BROKER_STATS_MEASUREMENT = "broker_stats"
BROKER_STATS_FIELDS = ("dropped", "clients_connected", "messages_stored")

#: Commands sent to devices and their results (``smartcity.commands``): a ``sent`` point from
#: the API or ``smartcity command``, an ``applied`` or ``rejected`` one from the device's
#: ``cmd_result`` (the ingester). Tag ``state``; fields ``command_id``, ``name``, ``args``
#: (JSON), ``actor`` on sent points, ``command_id`` and ``reason`` on results.
COMMAND_MEASUREMENT = "device_command"
COMMAND_STATE_TAG = "state"
COMMAND_FIELDS = ("command_id", "name", "args", "actor", "reason")

#: Retention policies (``smartcity.retention``): raw readings live in the database's default
#: policy, InfluxDB's own ``autogen`` (so writers, Grafana's ad hoc queries and the v1 API of
#: InfluxDB 2.x/3.x that name no policy keep working and no data is ever moved), shortened to the
#: raw retention; the rollups live in policies of their own, kept as long as configured.
RAW_RETENTION_POLICY = "autogen"
HOURLY_RETENTION_POLICY = "hourly"
DAILY_RETENTION_POLICY = "daily"
#: Rollup fields are ``<field>_<aggregate>``: ``activePower_mean``, ``energy_spread``...
ROLLUP_AGGREGATES = ("mean", "min", "max", "last", "count", "sum")
#: A counter (a meter's lifetime total) also keeps how much it grew in the window.
COUNTER_AGGREGATE = "spread"
#: A state (text or flag) keeps its last value only.
STATE_AGGREGATE = "last"
#: The field every event point carries (``1``), so counting events is a sum; an event
#: measurement's rollup keeps it as how many events (per device and event tags) in the window.
EVENT_COUNT_FIELD = "count"
#: Continuous queries the platform creates are named ``rollup_<resolution>_<measurement>_<hash>``.
ROLLUP_CQ_PREFIX = "rollup_"
#: Windows that received late readings, to recompute (the ingester writes one point per
#: device and hour, in the same write as the readings; ``smartcity.retention`` recomputes
#: and deletes them). Tag ``worker``; fields ``device_type``, ``device_id``, ``hour`` (epoch s).
ROLLUP_PENDING_MEASUREMENT = "rollup_pending"
ROLLUP_PENDING_FIELDS = ("device_type", "device_id", "hour")


def rollup_field(field: str, aggregate: str) -> str:
    """The rollup field holding ``aggregate`` of ``field``."""
    return f"{field}_{aggregate}"
