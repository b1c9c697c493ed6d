"""Open data: CSV, JSON and GeoJSON downloads, and the DCAT-AP_IT catalogue."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response

from api.deps import EngineDep, InfluxDep, SettingsDep
from api.opendata import dcat, formats
from api.opendata.datasets import LOCAL, Dataset, Days
from api.opendata.registry import DATASETS
from api.problems import ProblemError
from api.schemas.common import Text, problem_responses
from api.schemas.opendata import ColumnPublic, DatasetPublic
from api.state import clock

router = APIRouter(prefix="/v1/opendata", tags=["open data"])
#: The keys of ``DATASETS``, in its order (``tests/api/test_types.py`` checks they agree).
DatasetId = Literal[
    "streetlight-energy-daily",
    "wastebin-collections-daily",
    "evcharger-usage-daily",
    "airquality-daily",
    "devices",
]
Format = Literal["csv", "json", "geojson"]
DAY = r"^\d{4}-\d{2}-\d{2}$"
DEFAULT_DAYS = 30
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2099, 12, 31)
MAX_DAYS = 366


def _public(d: Dataset) -> DatasetPublic:
    return DatasetPublic(
        id=d.id,
        title=Text(it=d.title_it, en=d.title_en),
        description=Text(it=d.description_it, en=d.description_en),
        license=formats.LICENSE_URL,
        publisher=formats.PUBLISHER,
        theme=d.theme,
        update_frequency=d.frequency,
        daily=d.daily,
        columns=[
            ColumnPublic(name=c.name, type=c.type, title=Text(it=c.it, en=c.en)) for c in d.columns
        ],
        formats={f: f"/v1/opendata/{d.id}.{f}" for f in formats.MEDIA_TYPES},
    )


@router.get(
    "/catalog",
    summary="The DCAT-AP_IT catalogue of the open datasets (JSON-LD)",
    response_class=Response,
    responses={200: {"content": {"application/ld+json": {}}, "description": "JSON-LD"}},
)
async def catalog(request: Request, settings: SettingsDep) -> Response:
    base = str(request.base_url).rstrip("/")
    body = dcat.catalog(base, clock(settings))
    return Response(json.dumps(body, ensure_ascii=False), media_type="application/ld+json")


@router.get("/datasets", summary="The open datasets, their columns and download links")
async def list_datasets() -> list[DatasetPublic]:
    return [_public(d) for d in DATASETS.values()]


@router.get("/datasets/{dataset_id}", summary="One open dataset's description")
async def get_dataset(dataset_id: DatasetId) -> DatasetPublic:
    return _public(DATASETS[dataset_id])


@router.get(
    "/{dataset_id}.{fmt}",
    summary="Download a dataset (aggregated, CC BY 4.0)",
    response_class=Response,
    responses={
        200: {
            "content": {m.split(";")[0]: {} for m in formats.MEDIA_TYPES.values()},
            "description": "The data in the chosen format.",
        },
        **problem_responses(422, 503),
    },
)
async def download(
    dataset_id: Annotated[DatasetId, Path()],
    fmt: Annotated[Format, Path(description="csv, json or geojson")],
    db: InfluxDep,
    engine: EngineDep,
    settings: SettingsDep,
    start: Annotated[
        str | None, Query(pattern=DAY, description="First day (Rome time), YYYY-MM-DD.")
    ] = None,
    end: Annotated[
        str | None, Query(pattern=DAY, description="Last day, included. Default: today.")
    ] = None,
) -> Response:
    dataset = DATASETS[dataset_id]
    try:
        last = date.fromisoformat(end) if end else clock(settings).astimezone(LOCAL).date()
        first = date.fromisoformat(start) if start else last - timedelta(days=DEFAULT_DAYS - 1)
    except ValueError:
        first, last = date.max, date.min  # a day that does not exist, such as 2026-02-30
    if first > last or (last - first).days >= MAX_DAYS or first < FIRST_DAY or last > LAST_DAY:
        raise ProblemError(
            422,
            "start and end must be days (YYYY-MM-DD) from 2000 to 2099, start on or before "
            f"end, at most {MAX_DAYS} days apart",
            errors=[{"loc": ["query", "start"], "msg": "bad day range", "type": "value_error"}],
        )
    rows = await dataset.build(db, engine, Days(first, last))
    meta = {"start": first.isoformat(), "end": last.isoformat()} if dataset.daily else {}
    if fmt == "csv":
        content = formats.to_csv(dataset, rows)
        headers = {"Content-Disposition": f'attachment; filename="{dataset.id}.csv"'}
    elif fmt == "json":
        content, headers = formats.to_json(dataset, rows, meta), {}
    else:
        content, headers = formats.to_geojson(dataset, rows, meta), {}
    return Response(content, media_type=formats.MEDIA_TYPES[fmt], headers=headers)
