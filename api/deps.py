"""Dependencies, as ``Annotated`` aliases the routers declare parameters with.

Those that only look something up are ``async def``: FastAPI runs a plain ``def`` dependency
in its thread pool, a hop that costs more than the lookup itself on every request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.catalogue import Catalogue
from api.problems import ProblemError
from api.security import Principal
from api.settings import ApiSettings
from api.state import CityState, StateCache
from smartcity.influx import InfluxReader

api_key = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="An API key (scopes read < operate < write < admin); 'smartcity api "
    "create-key' makes one.",
)


async def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        yield session


async def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def get_influx(request: Request) -> InfluxReader:
    influx: InfluxReader = request.app.state.influx
    return influx


async def get_cache(request: Request) -> StateCache:
    cache: StateCache = request.app.state.state_cache
    return cache


async def get_state(cache: Annotated[StateCache, Depends(get_cache)]) -> CityState:
    return await cache.get()


async def get_catalogue(request: Request) -> Catalogue:
    catalogue: Catalogue = request.app.state.catalogue
    return catalogue


def require(scope: str) -> Callable[..., Principal]:
    """A dependency admitting keys with ``scope`` or a higher one (401 without, 403 below)."""

    def check(request: Request, key: Annotated[str | None, Security(api_key)] = None) -> Principal:
        principal: Principal | None = getattr(request.state, "principal", None)
        if not key or principal is None:
            raise ProblemError(
                401,
                f"this needs an API key with scope '{scope}' in the X-API-Key header",
                {"WWW-Authenticate": "ApiKey"},
            )
        if not principal.allows(scope):
            raise ProblemError(
                403, f"the API key has scope '{principal.scope}'; this needs '{scope}'"
            )
        return principal

    return check


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
EngineDep = Annotated[Engine, Depends(get_engine)]
InfluxDep = Annotated[InfluxReader, Depends(get_influx)]
StateDep = Annotated[CityState, Depends(get_state)]
CacheDep = Annotated[StateCache, Depends(get_cache)]
CatalogueDep = Annotated[Catalogue, Depends(get_catalogue)]
Reader = Annotated[Principal, Depends(require("read"))]
Operator = Annotated[Principal, Depends(require("operate"))]
Writer = Annotated[Principal, Depends(require("write"))]
Admin = Annotated[Principal, Depends(require("admin"))]
