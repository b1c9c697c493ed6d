"""The one error hierarchy of the InfluxDB client, for writers and readers alike."""

from __future__ import annotations


class InfluxError(Exception):
    """Something went wrong talking to InfluxDB."""


class InfluxUnavailable(InfluxError):
    """InfluxDB did not answer, or kept failing until the caller stopped retrying: try again
    later (the API answers 503, the ingester spools)."""


class QueryFailed(InfluxError):
    """InfluxDB refused a query: a bug on our side, never caused by request input."""
