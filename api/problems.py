"""Every error as RFC 9457 ``application/problem+json``, without leaking internals."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from smartcity.influx import InfluxUnavailable, QueryFailed

log = logging.getLogger("smartcity.api")
MEDIA_TYPE = "application/problem+json"


class ProblemError(Exception):
    """Raise to answer with a problem: ``status``, a ``detail`` saying what to do."""

    def __init__(
        self,
        status: int,
        detail: str,
        headers: dict[str, str] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers
        self.errors = errors


def problem(
    status: int,
    detail: str | None = None,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type")}
        for e in exc.errors()[:20]
    ]


def _allowed(app: FastAPI, path: str) -> list[str]:
    """Every method some route serves at ``path``."""
    methods: set[str] = set()
    for route in app.router.routes:
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path):
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


def install(app: FastAPI) -> None:
    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else None
        headers = exc.headers
        if exc.status_code == 405:  # Starlette names only the first route's methods
            headers = {"Allow": ", ".join(_allowed(app, request.scope["path"]))}
        return problem(exc.status_code, detail, request.url.path, headers)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = _validation_errors(exc)
        where = ", ".join(".".join(e["loc"]) for e in errors[:3])
        return problem(422, f"invalid input: {where}", request.url.path, errors=errors)

    async def raised(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProblemError)
        return problem(exc.status, exc.detail, request.url.path, exc.headers, exc.errors)

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("influxdb unavailable", extra={"error": str(exc), "path": request.url.path})
        return problem(
            503,
            "the time-series database is not answering; try again shortly",
            request.url.path,
            {"Retry-After": "5"},
        )

    async def failed(request: Request, exc: Exception) -> JSONResponse:
        log.error("request failed", exc_info=exc, extra={"path": request.url.path})
        return problem(500, "the server could not compute this answer", request.url.path)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(ProblemError, raised)
    app.add_exception_handler(InfluxUnavailable, unavailable)
    app.add_exception_handler(QueryFailed, failed)
    app.add_exception_handler(Exception, failed)
