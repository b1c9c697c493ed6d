"""One router per resource; ``ROUTERS`` is the one place they are all included from."""

from api.routers import (
    alerts,
    catalogue,
    commands,
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
    commands.router,
    readings.router,
    alerts.router,
    zones.router,
    opendata.router,
    keys.router,
    health.router,
    page.router,
]
