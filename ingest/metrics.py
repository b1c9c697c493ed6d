"""The ingester's health figures: Prometheus ``/metrics``, and the same written to InfluxDB.

Counting happens on plain integers in the hot path; Prometheus reads them when it scrapes (a
custom collector) and the ``ingest_stats`` / ``broker_stats`` points feed the Grafana pipeline
board from the same database as the city data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from smartcity.lineprotocol import line
from smartcity.storage import (
    BROKER_STATS_FIELDS,
    BROKER_STATS_MEASUREMENT,
    INGEST_STATS_FIELDS,
    INGEST_STATS_MEASUREMENT,
    INGEST_STATS_TAG,
)

log = logging.getLogger("smartcity.ingest.metrics")

#: Mosquitto ``$SYS`` topics copied into ``broker_stats`` (field name -> topic).
BROKER_TOPICS = dict(
    zip(
        BROKER_STATS_FIELDS,
        (
            "$SYS/broker/publish/messages/dropped",
            "$SYS/broker/clients/connected",
            "$SYS/broker/store/messages/count",
        ),
        strict=True,
    )
)
_BROKER_FIELDS = {topic: name for name, topic in BROKER_TOPICS.items()}

#: (attribute, Prometheus name, help) of the counters.
COUNTERS = (
    ("received", "smartcity_ingest_messages_received", "MQTT messages received"),
    ("points", "smartcity_ingest_points_written", "Points stored in InfluxDB"),
    ("invalid", "smartcity_ingest_invalid", "Messages refused, dead-lettered with a reason"),
    ("retries", "smartcity_ingest_write_retries", "InfluxDB write attempts retried"),
    ("acked", "smartcity_ingest_messages_acked", "Messages acknowledged to the broker"),
    ("spooled", "smartcity_ingest_batches_spooled", "Batches spilled to the disk spool"),
)
GAUGES = (
    ("queue_depth", "smartcity_ingest_queue_batches", "Batches waiting in memory"),
    ("spool_depth", "smartcity_ingest_spool_batches", "Batches waiting on disk"),
)


class IngestMetrics:
    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.received = self.points = self.invalid = self.retries = self.acked = 0
        self.spooled = self.queue_depth = self.spool_depth = 0
        self.last_lag = self.last_latency = 0.0
        self.broker: dict[str, int] = {}
        self._last_report = (time.monotonic(), 0)
        self.registry = CollectorRegistry()
        self.registry.register(self)
        r = self.registry
        self.batch_size = Histogram(
            "smartcity_ingest_batch_points", "Points per InfluxDB write", registry=r,
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 50000),
        )  # fmt: skip
        self.write_latency = Histogram(
            "smartcity_ingest_write_seconds", "InfluxDB write latency", registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )  # fmt: skip
        self.lag = Histogram(
            "smartcity_ingest_lag_seconds",
            "Age of a batch's newest reading (device timestamp) when it is stored", registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600),
        )  # fmt: skip

    def collect(self) -> Iterator[Metric]:
        for attr, name, help_text in COUNTERS:
            c = CounterMetricFamily(name, help_text, labels=["worker"])
            c.add_metric([self.worker], getattr(self, attr))
            yield c
        for attr, name, help_text in GAUGES:
            g = GaugeMetricFamily(name, help_text, labels=["worker"])
            g.add_metric([self.worker], getattr(self, attr))
            yield g
        for field, value in self.broker.items():
            yield GaugeMetricFamily(f"smartcity_broker_{field}", f"Mosquitto $SYS {field}", value)

    def serve(self, port: int) -> None:
        if not port:
            return
        try:
            start_http_server(port, registry=self.registry)
        except OSError as exc:
            log.error(
                "metrics endpoint not started; choose another --metrics-port (0 turns it off)",
                extra={"port": port, "error": str(exc)},
            )

    def observe_write(self, points: int, seconds: float, newest_ts: float | None) -> None:
        self.points += points
        self.batch_size.observe(points)
        self.write_latency.observe(seconds)
        self.last_latency = seconds
        if newest_ts is not None:
            self.last_lag = max(time.time() - newest_ts, 0.0)
            self.lag.observe(self.last_lag)

    def broker_value(self, topic: str, payload: bytes) -> None:
        name = _BROKER_FIELDS.get(topic)
        if name is None:
            return
        try:
            self.broker[name] = int(payload.decode().split()[0])
        except (ValueError, IndexError, UnicodeDecodeError):
            log.warning("unreadable $SYS value", extra={"topic": topic})

    def lines(self, now_ns: int) -> list[str]:
        """The current figures as an ``ingest_stats`` point (and ``broker_stats``)."""
        now = time.monotonic()
        then, received_then = self._last_report
        self._last_report = (now, self.received)
        rate = (self.received - received_then) / (now - then) if now > then else 0.0
        values: tuple[float | int, ...] = (  # in the order of INGEST_STATS_FIELDS
            self.received,
            self.points,
            self.invalid,
            self.retries,
            self.queue_depth,
            self.spool_depth,
            float(self.last_lag),
            float(self.last_latency),
            float(rate),
        )
        fields: dict[str, float | int | str | bool] = dict(
            zip(INGEST_STATS_FIELDS, values, strict=True)
        )
        tags = {INGEST_STATS_TAG: self.worker}
        out = [line(INGEST_STATS_MEASUREMENT, tags, fields, now_ns)]
        if self.broker:
            out.append(line(BROKER_STATS_MEASUREMENT, {}, dict(self.broker), now_ns))
        return out
