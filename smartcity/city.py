"""Cremona's quartieri, the zones every device is placed in and every summary is grouped by.

Centroids are approximate (to ~300 m) and radii rough: enough to place simulated devices on the
right side of town and to draw them on a map, not a cadastral boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

CITY_ID = "cremona"
CITY_NAME = "Cremona"
CENTRE = (45.1333, 10.0222)
TIMEZONE = "Europe/Rome"


@dataclass(frozen=True, slots=True)
class Zone:
    name: str
    lat: float
    lon: float
    radius_m: float
    #: Relative share of the city's street furniture placed here.
    weight: float


ZONES: tuple[Zone, ...] = (
    Zone("Centro", 45.1335, 10.0245, 700, 3.0),
    Zone("Po", 45.1240, 10.0185, 500, 1.0),
    Zone("Borgo Loreto", 45.1430, 10.0180, 500, 1.2),
    Zone("Zaist", 45.1465, 10.0075, 600, 1.2),
    Zone("Cambonino", 45.1490, 10.0390, 600, 1.2),
    Zone("Boschetto", 45.1430, 10.0600, 700, 0.8),
    Zone("Migliaro", 45.1575, 10.0260, 600, 0.8),
    Zone("Incrociatello", 45.1390, 10.0000, 500, 1.0),
    Zone("Sant'Ambrogio", 45.1255, 9.9975, 600, 1.0),
    Zone("Maristella", 45.1300, 9.9800, 600, 0.8),
    Zone("Cavatigozzi", 45.1385, 9.9550, 700, 0.6),
    Zone("San Bernardo", 45.1220, 10.0350, 600, 0.9),
    Zone("Bagnara", 45.1210, 10.0510, 600, 0.7),
)
ZONE_NAMES: tuple[str, ...] = tuple(z.name for z in ZONES)
