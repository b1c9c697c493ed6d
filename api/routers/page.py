"""The public page at ``/``: the catalogue with live KPIs, in Italian or English.

Rendered on the server, so the figures are there without JavaScript; styled with
bootstrap-italia, the design system of Italian public administrations (AGID guidelines).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from api.alerts import build_alerts
from api.deps import CatalogueDep, SettingsDep, StateDep
from api.opendata.datasets import LOCAL
from api.routers.catalogue import service_public

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent.parent / "templates")
UNITS = {"count": "", "%": "%", "kWh": "kWh"}


def number(value: float | None, lang: str) -> str:
    """12345.6 -> '12.345,6' in Italian, '12,345.6' in English; integers without decimals."""
    if value is None:
        return "—"
    text = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
    return text.translate(str.maketrans(",.", ".,")) if lang == "it" else text


def local_time(t: datetime, lang: str) -> str:
    fmt = "%d/%m/%Y %H:%M" if lang == "it" else "%Y-%m-%d %H:%M"
    return t.astimezone(LOCAL).strftime(fmt)


templates.env.filters["number"] = number
templates.env.filters["local_time"] = local_time


@router.get("/", response_class=HTMLResponse)
async def index(
    request: Request,
    catalogue: CatalogueDep,
    state: StateDep,
    settings: SettingsDep,
    lang: Literal["it", "en"] = "it",
) -> HTMLResponse:
    services = [service_public(s, state, settings) for s in catalogue.services]
    alerts = build_alerts(state)
    return templates.TemplateResponse(
        request,
        "index.html",
        {
            "lang": lang,
            "other": "en" if lang == "it" else "it",
            "live": [s for s in services if s.status == "live"],
            "planned": [s for s in services if s.status == "planned"],
            "as_of": state.now,
            "alerts": len(alerts),
            "units": UNITS,
        },
    )
