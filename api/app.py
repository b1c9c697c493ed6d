"""The FastAPI application, built by ``create_app(settings)``.

Everything is checked before the app exists: settings by pydantic, the catalogue file against
the KPI modules, the registry's tables. InfluxDB is only contacted by requests, so the API starts
(and says 503 where it must) while the database is still coming up.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from sqlalchemy.orm import Session

from api import catalogue, openapi, problems
from api.catalogue import Catalogue
from api.commands import CommandSender
from api.ratelimit import RateLimit
from api.routers import ROUTERS
from api.security import KeyStore, create_key
from api.settings import ApiSettings
from api.state import CityState, StateCache, compute
from smartcity import __version__
from smartcity.audit import cli_actor
from smartcity.influx import InfluxReader, InfluxWriter
from smartcity.registry.db import make_engine

log = logging.getLogger("smartcity.api")
#: Where Swagger UI's and ReDoc's scripts, styles and icon are served.
DOCS_ASSETS = "/static/docs"

DESCRIPTION = """
Cremona's catalogue of smart services (mandate plan, line 5.c) with live data from the city's
sensors: KPIs, device registry, latest readings, time series, alerts, zone summaries, and open
data (CSV, JSON, GeoJSON; DCAT-AP_IT catalogue; licence CC BY 4.0).

Reading is open to everyone. Sending commands to devices needs an API key with scope `operate`,
changing the registry scope `write`, managing keys scope `admin` (each includes the ones before
it); send it in the `X-API-Key` header. Requests are rate limited per client.
Errors are `application/problem+json` (RFC 9457).
"""


def prepare(state: CityState, catalogue: Catalogue, settings: ApiSettings) -> None:
    """Derive the answers most asked for from a new state, before it is served."""
    from api.routers.catalogue import services_json
    from api.routers.page import page_html
    from api.zones import zone_summaries

    services_json(catalogue, state, settings)
    zone_summaries(state)  # and the alerts it is built from
    state.latest_readings()  # the index the latest-reading answers are made from
    for lang in ("it", "en"):
        page_html(state, catalogue, settings, lang)


def create_app(settings: ApiSettings) -> FastAPI:
    engine = make_engine(settings.registry_url)
    if settings.admin_key is not None:
        with Session(engine) as session:
            # recorded as made by whoever started the API with it, the first time only
            secret = settings.admin_key.get_secret_value()
            create_key(session, "bootstrap admin", "admin", secret, actor=cli_actor())
    keys = KeyStore(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        influx = InfluxReader(settings, timeout=settings.query_timeout)
        app.state.influx = influx
        # commands: published over the API's own broker account, connected on the first one
        app.state.command_sender = CommandSender(settings.mqtt_url)
        app.state.command_writer = InfluxWriter(settings)
        app.state.state_cache = StateCache(
            lambda: compute(settings, influx, engine),
            settings.kpi_cache_seconds,
            lambda state: prepare(state, app.state.catalogue, settings),
        )
        try:
            yield
        finally:
            await influx.aclose()
            await app.state.command_writer.aclose()
            app.state.command_sender.close()
            engine.dispose()

    # /docs and /redoc with their scripts served from the installation, not a CDN: they must
    # work on a machine without internet; under /static/ they are not rate-limited either
    app = FastAPIOffline(
        static_url=DOCS_ASSETS,
        title="Cremona smart city API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        license_info={"name": "EUPL-1.2", "identifier": "EUPL-1.2"},
        responses=openapi.COMMON_ERRORS,
    )
    openapi.install(app)
    app.state.settings = settings
    app.state.engine = engine
    app.state.keys = keys
    app.state.catalogue = catalogue.load()
    problems.install(app)
    app.add_middleware(
        RateLimit,
        keys=keys,
        anonymous_per_minute=settings.rate_limit,
        keyed_per_minute=settings.rate_limit_keyed,
    )
    for router in ROUTERS:
        app.include_router(router)
    if settings.assets_dir.is_dir():
        app.mount(
            "/static/bootstrap-italia",
            StaticFiles(directory=settings.assets_dir),
            name="bootstrap-italia",
        )
    else:
        log.warning(
            "bootstrap-italia not found: the public page will be unstyled; run scripts/bootstrap "
            "or 'npm ci --prefix api/web', or set SMARTCITY_API_ASSETS_DIR",
            extra={"assets_dir": str(settings.assets_dir)},
        )
    return app
