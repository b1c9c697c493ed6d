"""The service's own health, for probes and operators."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel
from sqlalchemy import Engine, text

from api.deps import EngineDep, InfluxDep
from smartcity import __version__

router = APIRouter(prefix="/v1/health", tags=["health"])


class HealthPublic(BaseModel):
    status: Literal["ok", "degraded"]
    influxdb: bool
    registry: bool
    version: str


def _registry_ok(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


@router.get(
    "",
    summary="Is the API up, and can it reach InfluxDB and the registry?",
    responses={503: {"model": HealthPublic, "description": "A dependency is down."}},
)
async def health(db: InfluxDep, engine: EngineDep, response: Response) -> HealthPublic:
    influx_ok, registry_ok = await asyncio.gather(
        db.ping(), asyncio.to_thread(_registry_ok, engine)
    )
    ok = influx_ok and registry_ok
    if not ok:
        response.status_code = 503
    return HealthPublic(
        status="ok" if ok else "degraded",
        influxdb=influx_ok,
        registry=registry_ok,
        version=__version__,
    )
