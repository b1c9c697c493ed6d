"""Types shared by several resources.

The names a route accepts are spelled out as ``Literal`` types, so that type checkers see them;
``tests/test_registry.py`` and ``tests/api/test_types.py`` fail when one drifts from the contract.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from smartcity.contract import DEVICE_ID_PATTERN

DeviceId = Annotated[str, StringConstraints(pattern=DEVICE_ID_PATTERN)]
#: The contract's device types (``smartcity.devices.DEVICE_TYPES``), in its order.
DeviceTypeName = Literal["streetlight", "wastebin", "evcharger", "airquality"]
#: The city's zones (``smartcity.city.ZONE_NAMES``), in its order.
ZoneName = Literal[
    "Centro",
    "Po",
    "Borgo Loreto",
    "Zaist",
    "Cambonino",
    "Boschetto",
    "Migliaro",
    "Incrociatello",
    "Sant'Ambrogio",
    "Maristella",
    "Cavatigozzi",
    "San Bernardo",
    "Bagnara",
]
# strict: a number, not true/false or text that looks like one (the schema says number)
Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False, strict=True)]
Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False, strict=True)]
#: A bin's fill level, 0 (empty) to 1 (full).
FillLevel = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False, strict=True)]
#: Free text kept in the registry: without NUL, which PostgreSQL text cannot hold.
PlainText = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$")]


def _date_as_text(value: object) -> object:
    # pydantic would read a number as a Unix time; the schema (and JSON) say YYYY-MM-DD text
    if isinstance(value, int | float):
        raise ValueError("must be a date as YYYY-MM-DD text")
    return value


#: A calendar date, given as ISO 8601 text.
IsoDate = Annotated[date, BeforeValidator(_date_as_text)]


class Text(BaseModel):
    """The same text in Italian and English."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    it: str = Field(min_length=1)
    en: str = Field(min_length=1)


class Problem(BaseModel):
    """An error, as RFC 9457 ``application/problem+json``."""

    type: str = Field("about:blank", description="A URI naming the kind of problem.")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, Any]] | None = Field(
        None, description="For invalid input: each bad parameter and why."
    )


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries documenting the problem+json errors a route returns."""
    titles = {
        400: "Bad request",
        401: "Missing or invalid API key",
        403: "API key lacks the scope",
        404: "Not found",
        409: "Conflict",
        422: "Invalid input",
        429: "Too many requests",
        503: "InfluxDB unavailable",
    }
    return {
        code: {
            "model": Problem,
            "description": titles[code],
            "content": {"application/problem+json": {}},
        }
        for code in codes
    }
