"""The audit trail (admin scope): who did what, when, on which device, with what outcome.

Read-only: there is no route to change or delete an entry (PUT, PATCH, DELETE and POST answer
405), and :mod:`smartcity.audit` refuses any update or delete made through SQLAlchemy.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from api.deps import Admin, SessionDep
from api.opendata import formats
from api.problems import ProblemError
from api.registry import crud
from api.schemas.audit import AuditEntryPublic, AuditPublic
from api.schemas.common import problem_responses
from smartcity.contract import DEVICE_ID_PATTERN

router = APIRouter(prefix="/v1/audit", tags=["audit"])
CSV_MEDIA_TYPE = formats.MEDIA_TYPES["csv"]
COLUMNS = tuple(AuditEntryPublic.model_fields)
#: Characters that make a spreadsheet read a cell as a formula (or, tab and CR, hide one).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: Times outside these are a mistake (and would overflow a conversion to UTC).
EARLIEST, LATEST = datetime(2000, 1, 1), datetime(2100, 1, 1)


def _utc(value: datetime | None, name: str) -> datetime | None:
    """``value`` in UTC (a time without offset is taken as UTC), or a 422 when out of range."""
    if value is None:
        return None
    if not EARLIEST <= value.replace(tzinfo=None) <= LATEST:
        raise ProblemError(
            422,
            f"{name} must be a time from 2000 to 2099, ISO 8601 (e.g. 2026-12-04T09:00:00Z)",
            errors=[{"loc": ["query", name], "msg": "out of range", "type": "value_error"}],
        )
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def neutralise(cell: str) -> str:
    """A cell a spreadsheet shows as text: one that would start a formula gets a leading ``'``
    (OWASP's advice against CSV injection; actors and details are free text)."""
    return f"'{cell}" if cell.startswith(FORMULA_STARTS) else cell


def to_csv(entries: list[AuditEntryPublic]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for entry in entries:
        row = entry.model_dump(mode="json")
        writer.writerow([neutralise("" if row[c] is None else str(row[c])) for c in COLUMNS])
    return out.getvalue()


def _wants_csv(fmt: str | None, request: Request) -> bool:
    if fmt is not None:
        return fmt == "csv"
    return "text/csv" in request.headers.get("accept", "")


@router.get(
    "",
    summary="The audit trail, newest first (admin scope); CSV with ?format=csv",
    response_model=AuditPublic,
    responses={
        200: {"content": {"text/csv": {}}, "description": "JSON, or CSV when asked for."},
        **problem_responses(401, 403, 422),
    },
)
def list_audit(
    request: Request,
    session: SessionDep,
    _who: Admin,
    since: Annotated[
        datetime | None, Query(description="From this time on (ISO 8601; no offset = UTC).")
    ] = None,
    until: Annotated[datetime | None, Query(description="Before this time.")] = None,
    device_id: Annotated[str | None, Query(pattern=DEVICE_ID_PATTERN)] = None,
    action: Annotated[
        str | None, Query(pattern=r"^[a-z_.]{1,64}$", description="e.g. device.create")
    ] = None,
    actor: Annotated[
        str | None, Query(max_length=120, description="e.g. key:0123456789ab or cli:root")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    fmt: Annotated[
        Literal["json", "csv"] | None,
        Query(alias="format", description="csv or json; default: JSON unless Accept: text/csv"),
    ] = None,
) -> AuditPublic | Response:
    first, last = _utc(since, "since"), _utc(until, "until")
    if first is not None and last is not None and first > last:
        raise ProblemError(
            422,
            "since must not be after until",
            errors=[{"loc": ["query", "since"], "msg": "after until", "type": "value_error"}],
        )
    where = crud.AuditFilter(first, last, device_id, action, actor)
    rows, total = crud.list_audit(session, where, limit, offset)
    entries = [AuditEntryPublic.model_validate(r) for r in rows]
    if _wants_csv(fmt, request):
        return Response(
            to_csv(entries),
            media_type=CSV_MEDIA_TYPE,
            headers={
                "Content-Disposition": 'attachment; filename="audit.csv"',
                "X-Total-Count": str(total),
            },
        )
    return AuditPublic(data=entries, count=total)
