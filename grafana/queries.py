"""Pieces of InfluxQL for dashboards, with the names taken from the device models.

Grafana, not this code, fills in ``$timeFilter``, ``$__interval`` and the ``$zone`` /
``$device_type`` variables when a panel runs (regex-escaped, so a zone name cannot change the
query); that is why these are templates and not queries with bound parameters.
"""

from __future__ import annotations

from pydantic import BaseModel

from smartcity import retention
from smartcity.kpis import Kpi, statements
from smartcity.storage import (
    BROKER_STATS_MEASUREMENT,
    COMMAND_FIELDS,
    COMMAND_MEASUREMENT,
    COMMAND_STATE_TAG,
    DEADLETTER_FIELDS,
    DEADLETTER_MEASUREMENT,
    HEALTH_MEASUREMENT,
    INGEST_STATS_FIELDS,
    INGEST_STATS_MEASUREMENT,
    STATUS_FIELDS,
    STATUS_MEASUREMENT,
)

TIME_FILTER = "$timeFilter"
INTERVAL = "$__interval"
ZONE = '"zone" =~ /^$zone$/'
DEVICE_TYPE = '"device_type" =~ /^$device_type$/'

#: Grafana unit ids for the units the device models declare.
UNITS = {
    "W": "watt",
    "kW": "kwatt",
    "kWh": "kwatth",
    "V": "volt",
    "A": "amp",
    "Cel": "celsius",
    "1": "percentunit",
    "s": "s",
    "ug/m3": "conμgm3",
    "mg/m3": "conmgm3",
}


#: Grafana unit ids for the units KPIs are declared in (``smartcity.kpis``).
KPI_UNITS = {
    "count": "none",
    "kWh": "kwatth",
    "%": "percent",
    "µg/m³": "conμgm3",
    "mg/m³": "conmgm3",
    "days": "none",
    "hours": "none",
    "band": "none",
}


def kpi_queries(kpi: Kpi, source: str | None = None, raw: bool = False) -> tuple[str, ...]:
    """The InfluxQL of a KPI's panel: its declaration's statements (``smartcity.kpis``, the
    very ones the API runs, from the same resolution: ``retention.kpi_rollup``) within the
    board's time range, zones and device types. ``source`` reads another measurement than the
    declared one; ``raw`` the raw points even where the API reads a rollup."""
    rollup = None if raw else retention.kpi_rollup(kpi)
    return statements(kpi, TIME_FILTER, (ZONE, DEVICE_TYPE), source, rollup)


def kpi_unit(kpi: Kpi) -> str:
    if kpi.unit not in KPI_UNITS:
        raise ValueError(f"KPI {kpi.id}: no Grafana unit for {kpi.unit!r}; add it to KPI_UNITS")
    return KPI_UNITS[kpi.unit]


def where(*conditions: str, variables: bool = True, time: bool = True) -> str:
    """``WHERE`` with the board's filters: the conditions, zone and device type, time range.

    Alert rules have no dashboard variables, so they pass ``variables=False``.
    """
    parts = list(conditions)
    if variables:
        parts += [ZONE, DEVICE_TYPE]
    if time:
        parts.append(TIME_FILTER)
    return "WHERE " + " AND ".join(parts) if parts else ""


def literal(value: str) -> str:
    """An InfluxQL string literal (for constants of the contract, such as a status name)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def eq(field: str, value: str) -> str:
    return f"{field} = {literal(value)}"


def ne(field: str, value: str) -> str:
    return f"{field} != {literal(value)}"


def quote(name: str) -> str:
    return '"' + name.replace('"', '\\"') + '"'


#: The shared measurements, quoted (names from ``smartcity.storage``).
STATUS = quote(STATUS_MEASUREMENT)
HEALTH = quote(HEALTH_MEASUREMENT)
DEADLETTER = quote(DEADLETTER_MEASUREMENT)
INGEST_STATS = quote(INGEST_STATS_MEASUREMENT)
BROKER_STATS = quote(BROKER_STATS_MEASUREMENT)
COMMANDS = quote(COMMAND_MEASUREMENT)


class Fields:
    """Quoted field names of models: ``Fields(StreetlightReading).activePower``.

    A typo or a field renamed in the contract fails ``smartcity grafana build`` instead of
    leaving a panel that silently shows nothing.
    """

    def __init__(self, *models: type[BaseModel], extra: tuple[str, ...] = ()) -> None:
        self._names = {n for m in models for n in m.model_fields} | set(extra)

    def __getattr__(self, name: str) -> str:
        if name.startswith("_") or name not in self._names:
            raise AttributeError(f"no field {name!r} in {sorted(self._names)}")
        return quote(name)


#: Quoted fields of the status and dead-letter measurements: ``STATUS_F.online``.
STATUS_F = Fields(extra=STATUS_FIELDS)
DEADLETTER_F = Fields(extra=DEADLETTER_FIELDS)
INGEST_STATS_F = Fields(extra=INGEST_STATS_FIELDS)
COMMAND_F = Fields(extra=(*COMMAND_FIELDS, COMMAND_STATE_TAG))


def unit(model: type[BaseModel], field: str) -> str:
    """The Grafana unit of a model field, from the unit the contract declares for it."""
    extra = model.model_fields[field].json_schema_extra
    declared = extra.get("unit") if isinstance(extra, dict) else None
    if declared not in UNITS:
        raise ValueError(f"{model.__name__}.{field}: no Grafana unit for {declared!r}")
    return UNITS[str(declared)]
