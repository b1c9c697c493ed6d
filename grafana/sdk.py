"""grafana-foundation-sdk, plus the one query kind it lacks: raw InfluxQL.

The SDK's dashboard builders are the v1 schema, which is what Grafana's file provisioning and
``POST /api/dashboards/db`` take; they warn "prefer dashboardv2" when imported, so the modules
are imported here once with that warning silenced, and the rest of the package imports them
from here. The SDK has no InfluxDB query model, so :class:`InfluxQL` is one, registered with
the SDK's runtime so that a dashboard read back with ``Dashboard.from_json`` keeps its queries
as typed objects (and an unknown key in one is an error, not silently dropped).
"""

from __future__ import annotations

import json
import warnings
from typing import Any, Literal, Self

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from grafana_foundation_sdk.builders import alerting as alerting
    from grafana_foundation_sdk.builders import bargauge as bargauge
    from grafana_foundation_sdk.builders import common as common
    from grafana_foundation_sdk.builders import dashboard as dashboard
    from grafana_foundation_sdk.builders import expr as expr
    from grafana_foundation_sdk.builders import geomap as geomap
    from grafana_foundation_sdk.builders import piechart as piechart
    from grafana_foundation_sdk.builders import stat as stat
    from grafana_foundation_sdk.builders import statetimeline as statetimeline
    from grafana_foundation_sdk.builders import table as table
    from grafana_foundation_sdk.builders import text as text
    from grafana_foundation_sdk.builders import timeseries as timeseries
    from grafana_foundation_sdk.cog import builder as cogbuilder
    from grafana_foundation_sdk.cog import runtime, variants
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models import alerting as alerting_models
    from grafana_foundation_sdk.models import common as common_models
    from grafana_foundation_sdk.models import dashboard as dashboard_models
    from grafana_foundation_sdk.models import geomap as geomap_models
    from grafana_foundation_sdk.models import piechart as piechart_models

__all__ = [
    "DATASOURCE",
    "DATASOURCE_UID",
    "EXPRESSIONS",
    "InfluxQL",
    "Query",
    "alerting",
    "alerting_models",
    "bargauge",
    "cogbuilder",
    "common",
    "common_models",
    "dashboard",
    "dashboard_models",
    "dump",
    "expr",
    "geomap",
    "geomap_models",
    "influxql",
    "load_dashboard",
    "piechart",
    "piechart_models",
    "stat",
    "statetimeline",
    "table",
    "text",
    "timeseries",
    "to_json",
]

#: The provisioned InfluxDB data source; dashboards and alert rules refer to it by this uid.
DATASOURCE_UID = "smartcity-influxdb"
DATASOURCE = common_models.DataSourceRef(type_val="influxdb", uid=DATASOURCE_UID)
EXPRESSIONS = common_models.DataSourceRef(type_val="__expr__", uid="__expr__")

ResultFormat = Literal["time_series", "table"]
_INFLUXQL_KEYS = {"refId", "datasource", "query", "rawQuery", "resultFormat", "alias", "hide"}


class InfluxQL(variants.Dataquery):
    """A raw InfluxQL target as Grafana's InfluxDB data source stores it."""

    def __init__(
        self,
        query: str,
        ref_id: str = "A",
        result_format: ResultFormat = "time_series",
        alias: str | None = None,
        hide: bool = False,
    ) -> None:
        self.query = query
        self.ref_id = ref_id
        self.result_format = result_format
        self.alias = alias
        self.hide = hide

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "refId": self.ref_id,
            "datasource": DATASOURCE.to_json(),
            "query": self.query,
            "rawQuery": True,
            "resultFormat": self.result_format,
        }
        if self.alias:
            out["alias"] = self.alias
        if self.hide:
            out["hide"] = True
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        unknown = set(data) - _INFLUXQL_KEYS
        if unknown or data.get("rawQuery") is not True:
            raise ValueError(f"not a raw InfluxQL target: unknown keys {sorted(unknown)}")
        return cls(
            data["query"],
            data["refId"],
            data["resultFormat"],
            data.get("alias"),
            bool(data.get("hide", False)),
        )


class Query(cogbuilder.Builder[variants.Dataquery]):
    """Builder wrapper so an :class:`InfluxQL` target goes wherever the SDK takes a query."""

    def __init__(self, query: InfluxQL) -> None:
        self.query = query

    def build(self) -> InfluxQL:
        return self.query


def influxql(
    query: str,
    ref_id: str = "A",
    result_format: ResultFormat = "time_series",
    alias: str | None = None,
    hide: bool = False,
) -> Query:
    return Query(InfluxQL(query, ref_id, result_format, alias, hide))


def to_json(obj: object) -> Any:
    """An SDK object as plain JSON data (dicts, lists, scalars)."""
    return json.loads(json.dumps(obj, cls=JSONEncoder))


def dump(data: object) -> str:
    """The committed form of a JSON file: stable key order as built, 2-space indent."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def load_dashboard(data: dict[str, Any]) -> Any:
    """Read dashboard JSON into the SDK's models (what the schema test round-trips)."""
    return dashboard_models.Dashboard.from_json(data)


def _target_from_json(data: dict[str, Any]) -> variants.Dataquery:
    """Read a target of an InfluxDB panel by its own data source.

    The SDK picks a target's model from the *panel's* data source; an expression target
    (``__expr__``) on an InfluxDB panel would otherwise be read as InfluxQL.
    """
    kind = (data.get("datasource") or {}).get("type", "influxdb")
    if kind == "influxdb":
        return InfluxQL.from_json(data)
    return runtime.dataquery_from_json(data, kind)


register_default_plugins()
runtime.register_dataquery_variant(runtime.DataqueryConfig("influxdb", _target_from_json))
