"""The OpenAPI document, made exact about errors: they are ``application/problem+json``.

FastAPI documents a problem model under ``application/json`` by default; this moves every
problem schema to ``application/problem+json`` so clients (and schemathesis) see the real type.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.schemas.common import problem_responses

#: Answers any operation may give: a bad key, bad input, too many requests.
COMMON_ERRORS = problem_responses(401, 422, 429)
PROBLEM = "application/problem+json"


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                license_info=app.license_info,
            )
            for path in doc["paths"].values():
                for operation in path.values():
                    _problems_as_problem_json(operation)
            app.openapi_schema = doc
        return app.openapi_schema

    # FastAPI's documented way to replace the document ("Extending OpenAPI"); mypy forbids
    # assigning to a method, and the app comes from fastapi_offline's factory, not a subclass
    app.openapi = openapi  # type: ignore[method-assign]


def _problems_as_problem_json(operation: dict[str, Any]) -> None:
    if "requestBody" in operation:  # a body that is not JSON at all
        operation["responses"].setdefault(
            "400",
            {
                "description": "The body is not valid JSON",
                "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
            },
        )
    for response in operation["responses"].values():
        content = response.get("content", {})
        if PROBLEM in content and "application/json" in content:
            content[PROBLEM] = content.pop("application/json")
