"""The catalogue as the API serves it: the data file's services with live KPI values."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from api.catalogue import Target
from api.schemas.common import Text


class KpiPublic(BaseModel):
    id: str
    name: Text
    unit: str
    description: Text | None = None
    measured: bool = Field(description="False: set by the plan, not measured by sensors.")
    value: float | None = Field(description="Live value; null when not measured or no data.")
    baseline: float | None = None
    target: Target | None = None
    target_met: bool | None = None
    breakdown: dict[str, Any] | None = Field(
        None, description="e.g. bins_full by stream, then by zone."
    )


class DatasetLink(BaseModel):
    id: str
    title: Text
    formats: dict[str, str] = Field(description="Download URL by format (csv, json, geojson).")


class DashboardLink(BaseModel):
    uid: str
    title: Text
    url: str | None = Field(description="Set when the API knows Grafana's address.")


class ServicePublic(BaseModel):
    id: str
    status: Literal["live", "planned"]
    name: Text
    description: Text
    strategic_line: str
    also_serves: list[str]
    sdgs: list[int]
    device_types: list[str]
    kpis: list[KpiPublic]
    datasets: list[DatasetLink]
    dashboards: list[DashboardLink]


class ServicesPublic(BaseModel):
    data: list[ServicePublic]
    count: int
    as_of: datetime = Field(description="The moment the live KPIs describe.")
