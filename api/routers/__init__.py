"""One router per resource; ``ROUTERS`` is the one place they are all included from."""

from api.routers import (
    alerts,
    audit,
    catalogue,
    commands,
    credentials,
    devices,
    health,
    keys,
    opendata,
    page,
    readings,
    zones,
)

ROUTERS = [
    catalogue.router,
    devices.router,
    credentials.router,
    commands.router,
    readings.router,
    alerts.router,
    zones.router,
    opendata.router,
    keys.router,
    audit.router,
    health.router,
    page.router,
]
