"""The public page at ``/``: the catalogue with live KPIs, in Italian or English.

Rendered on the server, so the figures are there without JavaScript; styled with
bootstrap-italia, the design system of Italian public administrations (AGID guidelines).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from api.alerts import build_alerts
from api.catalogue import Catalogue
from api.deps import CatalogueDep, SettingsDep, StateDep
from api.opendata.datasets import LOCAL
from api.routers.catalogue import all_services
from api.settings import ApiSettings
from api.state import CityState

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent.parent / "templates")
#: How a KPI's unit is shown after its value ("" where the KPI's name says it: lamps, days).
UNITS = {"count": "", "%": "%", "kWh": "kWh", "days": "", "hours": "", "band": ""}


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
    catalogue: CatalogueDep,
    state: StateDep,
    settings: SettingsDep,
    lang: Literal["it", "en"] = "it",
) -> HTMLResponse:
    return HTMLResponse(page_html(state, catalogue, settings, lang))


def page_html(state: CityState, catalogue: Catalogue, settings: ApiSettings, lang: str) -> str:
    """The page in ``lang``, rendered once per state."""

    def render() -> str:
        services = all_services(catalogue, state, settings).data
        return templates.get_template("index.html").render(
            lang=lang,
            other="en" if lang == "it" else "it",
            live=[s for s in services if s.status == "live"],
            planned=[s for s in services if s.status == "planned"],
            as_of=state.now,
            alerts=len(build_alerts(state)),
            units=UNITS,
        )

    return state.derive(f"page.{lang}", render)
