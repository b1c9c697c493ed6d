"""The ingester's settings (``[ingest]`` in the config file, ``SMARTCITY_INGEST_*``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from smartcity.settings import InfluxSettings, MqttSettings


class IngestSettings(MqttSettings, InfluxSettings):
    section = "ingest"

    batch_size: int = Field(
        20_000,
        ge=1,
        le=50_000,
        description="Points per InfluxDB write (InfluxDB 1.6 here spent ~20% less CPU per point "
        "on 20,000-point writes than on 5,000).",
    )
    flush_interval: float = Field(
        0.5, gt=0, le=60, description="Seconds before a part-full batch is written anyway."
    )
    flush_idle: float = Field(
        0.05,
        ge=0,
        le=60,
        description="Seconds without a new message after which a part-full batch is written at "
        "once, so the end of a burst is not held for --flush-interval; 0 = off.",
    )
    max_pending_batches: int = Field(
        3,
        ge=1,
        le=1000,
        description="Batches waiting in memory for InfluxDB. Beyond it the ingester stops "
        "reading from the broker while InfluxDB is slow (the broker queues, nothing is lost), "
        "and spills batches to the disk spool while InfluxDB is down.",
    )
    client_id: str = Field(
        "smartcity-ingest", description="MQTT client id; the persistent session is keyed on it."
    )
    share_group: str | None = Field(
        None,
        description="MQTT shared-subscription group ($share/GROUP/...) so several ingesters "
        "split the load; default: none for one worker, 'ingest' for --workers > 1. Mosquitto "
        "2.0 forgets shared subscriptions on restart until the subscribers reconnect (see "
        "docs/operations.md), so a single ingester uses a plain subscription.",
    )
    session_expiry: int = Field(
        86_400,
        ge=0,
        description="Seconds the broker keeps our session and queues messages while we are away.",
    )
    receive_maximum: int = Field(
        65_535,
        ge=1,
        le=65_535,
        description="Unacknowledged messages the broker may send us; must exceed a batch (better: "
        "several) or throughput stalls.",
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Ingester processes on this machine; with a user name in the broker URL, "
        "worker i logs in as <user>-<i> with the same password (the broker binds each login to "
        "one client id).",
    )
    reconnect_max_delay: float = Field(
        10.0, gt=0, description="Longest wait between reconnection attempts, in seconds."
    )
    spool_dir: Path = Field(
        Path("var/spool/ingest"),
        description="Where batches wait on disk while InfluxDB is down (one folder per worker).",
    )
    spool_max_bytes: int = Field(
        1024**3, ge=0, description="Disk the spool may use; beyond it receiving pauses."
    )
    metrics_port: int = Field(
        9108, ge=0, le=65535, description="Prometheus /metrics port (worker N adds N-1); 0 = off."
    )
    stats_interval: float = Field(
        10.0, gt=0, description="Seconds between ingest_stats points written to InfluxDB."
    )
    broker_stats: bool = Field(
        True, description="Copy Mosquitto's $SYS drop and queue counters into broker_stats."
    )
    shutdown_grace: float = Field(
        30.0,
        ge=0,
        description="On SIGTERM, how long to keep retrying InfluxDB before spooling (and, at "
        "most, to wait for the broker to take the MQTT copies of dead-letters).",
    )
    ca_file: Path | None = Field(
        None, description="CA certificate(s) for mqtts:// when the broker's CA is not a public one."
    )
    ready_file: Path | None = Field(
        None,
        description="File written once the subscriptions are in place (from then on the broker "
        "session queues every message for the ingester, even while it is away): a readiness "
        "signal for whatever starts publishers after it, such as smartcity up.",
    )
    registry_url: str | None = Field(
        None,
        description="Device registry (the API's, e.g. sqlite:///var/registry.db): tag points "
        "with each device's registered zone and count unregistered devices. Off when unset.",
    )
    rollup_interval: float = Field(
        30.0,
        ge=0,
        description="Seconds between recomputing the rollups of windows that received late "
        "readings (an edge outbox flushed after an outage, simulate --backfill); worker 1 "
        "does it; 0 = off (another ingester or smartcity storage rollup does it).",
    )
    rollup_delay: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="Seconds a late window's mark waits before it is recomputed: a write "
        "spans shards, and its mark may be visible before all its readings are.",
    )
    registry_refresh: float = Field(
        60.0, gt=0, le=86_400, description="Seconds between re-reads of the device registry."
    )

    @field_validator("ca_file")
    @classmethod
    def _ca_file_exists(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"{path} does not exist: give the broker's CA certificate file")
        return path

    @field_validator("ready_file")
    @classmethod
    def _ready_file_folder_exists(cls, path: Path | None) -> Path | None:
        # checked at start-up: found only after subscribing, it would stop a running ingester
        if path is not None and not path.parent.is_dir():
            raise ValueError(f"the folder {path.parent} does not exist: create it or pick another")
        return path
