"""The catalogue of smart services: a data file checked at load against the code it names.

``services.yaml`` is written by people (it follows the mandate plan) and says in words what each
KPI is; how a measured KPI is computed, its unit and target are declared once with its device
type (``smartcity.kpis``) and filled in here. This module refuses the file, saying where, if a
service lacks a field, a live service names a KPI its device types do not declare (or restates
a declared KPI's unit or target), a planned one carries data, or a dataset does not exist.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from api.schemas.common import DeviceTypeName, Text
from smartcity.kpis import Kpi

SERVICES_FILE = Path(__file__).with_name("services.yaml")
SLUG = r"^[a-z0-9]+(-[a-z0-9]+)*$"
PLAN_LINE = r"^(10|[1-9])\.[a-g] \S.*$"


class CatalogueError(ValueError):
    """The catalogue file is wrong; the message says where."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(Strict):
    operator: Literal[">=", ">", "<=", "<"]
    value: float
    source: str = Field(
        min_length=1, description="Who sets it: the plan line, or the article of law."
    )


class KpiDefinition(Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: Text
    unit: str | None = Field(
        None, min_length=1, max_length=16, description="Only for KPIs not measured."
    )
    description: Text | None = Field(None, description="The KPI's definition, in words.")
    baseline: float | None = Field(None, description="The plan's starting figure.")
    target: Target | None = None
    measured: bool = Field(
        True, description="False: a figure the plan sets but sensors cannot measure."
    )


class Dashboard(Strict):
    uid: str = Field(pattern=r"^[a-z0-9-]{1,40}$", description="Grafana dashboard uid.")
    title: Text


class Service(Strict):
    id: str = Field(pattern=SLUG)
    status: Literal["live", "planned"]
    name: Text
    description: Text
    strategic_line: str = Field(pattern=PLAN_LINE, examples=["1.d Piano energetico della città"])
    also_serves: list[str] = Field(default_factory=list)
    sdgs: list[int] = Field(min_length=1, description="UN Sustainable Development Goals, 1-17.")
    device_types: list[DeviceTypeName] = Field(default_factory=list)
    kpis: list[KpiDefinition] = Field(default_factory=list)
    datasets: list[str] = Field(default_factory=list)
    dashboards: list[Dashboard] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if any(not 1 <= g <= 17 for g in self.sdgs) or len(set(self.sdgs)) != len(self.sdgs):
            raise ValueError("sdgs must be distinct goal numbers from 1 to 17")
        for line in self.also_serves:
            if not re.match(PLAN_LINE, line):
                raise ValueError(f"also_serves entry {line!r} is not a plan line like '5.c ...'")
        if self.status == "planned":
            if self.device_types or self.datasets or self.dashboards or self.kpis:
                raise ValueError(
                    "a planned service has no devices, KPIs, datasets or dashboards yet"
                )
        elif not self.device_types:
            raise ValueError("a live service names the device types it runs on")
        ids = [k.id for k in self.kpis]
        if len(set(ids)) != len(ids):
            raise ValueError("KPI ids must be unique within a service")
        return self


class Catalogue(Strict):
    services: list[Service] = Field(min_length=1)

    def get(self, service_id: str) -> Service | None:
        return next((s for s in self.services if s.id == service_id), None)


def parse(text: str, where: str = "catalogue") -> Catalogue:
    """Validate a catalogue file's text against the models and against the code."""
    from api.opendata.datasets import DATASETS
    from smartcity.devices import DEVICE_TYPES

    try:
        catalogue = Catalogue.model_validate(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{where}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        from smartcity.contract import describe

        raise CatalogueError(f"{where}: {describe(exc, limit=10)}") from None
    ids = [s.id for s in catalogue.services]
    if len(set(ids)) != len(ids):
        raise CatalogueError(f"{where}: service ids must be unique")
    services = []
    for s in catalogue.services:
        declared = {k.id: k for t in s.device_types for k in DEVICE_TYPES[t].kpis}
        kpis = []
        for k in s.kpis:
            if not k.measured:
                if k.unit is None:
                    raise CatalogueError(f"{where}: KPI {k.id!r} not measured needs a unit")
                kpis.append(k)
                continue
            if k.id not in declared:
                raise CatalogueError(
                    f"{where}: service {s.id!r} lists KPI {k.id!r}, which no KPI module of "
                    f"{', '.join(s.device_types)} declares (add it to the type's kpis in "
                    "smartcity/devices, or set measured: false)"
                )
            if k.unit is not None or k.target is not None:
                raise CatalogueError(
                    f"{where}: KPI {k.id!r}: its unit and target are declared with its device "
                    "type (smartcity/devices); remove them here"
                )
            kpis.append(k.model_copy(update=_declared(declared[k.id])))
        services.append(s.model_copy(update={"kpis": kpis}))
        for d in s.datasets:
            if d not in DATASETS:
                raise CatalogueError(f"{where}: service {s.id!r} names unknown dataset {d!r}")
    return catalogue.model_copy(update={"services": services})


def _declared(kpi: Kpi) -> dict[str, object]:
    """The unit and target a KPI's declaration gives it."""
    t = kpi.target
    target = Target(operator=t.op, value=t.value, source=t.source) if t is not None else None
    return {"unit": kpi.unit, "target": target}


@functools.cache
def load(path: Path = SERVICES_FILE) -> Catalogue:
    return parse(path.read_text(encoding="utf-8"), str(path))
