"""The catalogue of smart services, with live KPIs for the live ones."""

from __future__ import annotations

import operator
from typing import Annotated

from fastapi import APIRouter, Path, Response

from api.catalogue import Catalogue, KpiDefinition, Service
from api.deps import CatalogueDep, SettingsDep, StateDep
from api.kpis import KPI_MODULES, Figure
from api.kpis.base import figures as kpi_figures
from api.opendata.datasets import DATASETS
from api.opendata.formats import MEDIA_TYPES
from api.problems import ProblemError
from api.schemas.catalogue import (
    DashboardLink,
    DatasetLink,
    KpiPublic,
    ServicePublic,
    ServicesPublic,
)
from api.schemas.common import Text, problem_responses
from api.settings import ApiSettings
from api.state import CityState

router = APIRouter(prefix="/v1/services", tags=["catalogue"])
COMPARE = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


def live_figures(state: CityState, service: Service) -> dict[str, Figure]:
    figures: dict[str, Figure] = {}
    for t in service.device_types:
        device = KPI_MODULES[t].device
        figures |= kpi_figures(device, state.snapshots[t], state.windows[t], state.settings)
    return figures


def _kpi(k: KpiDefinition, figure: Figure | None) -> KpiPublic:
    value = figure.value if figure and k.measured else None
    met = (
        COMPARE[k.target.operator](value, k.target.value)
        if k.target is not None and value is not None
        else None
    )
    return KpiPublic(
        id=k.id,
        name=k.name,
        unit=k.unit or "",
        description=k.description,
        measured=k.measured,
        value=value,
        baseline=k.baseline,
        target=k.target,
        target_met=met,
        breakdown=figure.breakdown if figure else None,
    )


def service_public(service: Service, state: CityState, settings: ApiSettings) -> ServicePublic:
    figures = live_figures(state, service) if service.status == "live" else {}
    grafana = settings.grafana_url.rstrip("/") if settings.grafana_url else None
    return ServicePublic(
        **service.model_dump(include={"id", "status", "name", "description", "strategic_line",
                                      "also_serves", "sdgs", "device_types"}),
        kpis=[_kpi(k, figures.get(k.id)) for k in service.kpis],
        datasets=[
            DatasetLink(
                id=d,
                title=Text(it=DATASETS[d].title_it, en=DATASETS[d].title_en),
                formats={f: f"/v1/opendata/{d}.{f}" for f in MEDIA_TYPES},
            )
            for d in service.datasets
        ],
        dashboards=[
            DashboardLink(uid=b.uid, title=b.title, url=f"{grafana}/d/{b.uid}" if grafana else None)
            for b in service.dashboards
        ],
    )  # fmt: skip


def all_services(catalogue: Catalogue, state: CityState, settings: ApiSettings) -> ServicesPublic:
    """The whole catalogue with live KPIs, built once per state."""

    def build() -> ServicesPublic:
        data = [service_public(s, state, settings) for s in catalogue.services]
        return ServicesPublic(data=data, count=len(data), as_of=state.now)

    return state.derive("services", build)


@router.get("", summary="All smart services, with live KPIs", response_model=ServicesPublic)
async def list_services(
    catalogue: CatalogueDep, state: StateDep, settings: SettingsDep
) -> Response:
    return Response(services_json(catalogue, state, settings), media_type="application/json")


def services_json(catalogue: Catalogue, state: CityState, settings: ApiSettings) -> bytes:
    """The most requested answer: serialised once per state, then served as it is."""
    return state.derive(
        "services.json",
        lambda: all_services(catalogue, state, settings).model_dump_json().encode(),
    )


@router.get(
    "/{service_id}", summary="One smart service, with live KPIs", responses=problem_responses(404)
)
async def get_service(
    service_id: Annotated[str, Path(pattern=r"^[a-z0-9-]{1,64}$")],
    catalogue: CatalogueDep,
    state: StateDep,
    settings: SettingsDep,
) -> ServicePublic:
    found = [s for s in all_services(catalogue, state, settings).data if s.id == service_id]
    if not found:
        ids = ", ".join(s.id for s in catalogue.services)
        raise ProblemError(404, f"no service {service_id!r}; the catalogue has: {ids}")
    return found[0]
