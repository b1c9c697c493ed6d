"""The InfluxDB v1 HTTP client every component uses: a writer (``/write`` with retries and
refusal isolation) and a reader (``/query`` with bound parameters), with one error hierarchy.

InfluxDB 1.x serves the v1 API natively and 2.x/3.x through their v1-compatibility endpoints,
so this is the project's one storage contract; the names it stores are in ``smartcity.storage``.
"""

from smartcity.influx.errors import InfluxError, InfluxUnavailable, QueryFailed
from smartcity.influx.reader import InfluxReader, Row, at, duration, ident
from smartcity.influx.writer import InfluxWriter, Rejected

__all__ = [
    "InfluxError",
    "InfluxReader",
    "InfluxUnavailable",
    "InfluxWriter",
    "QueryFailed",
    "Rejected",
    "Row",
    "at",
    "duration",
    "ident",
]
