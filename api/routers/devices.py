"""The device registry: public listing with filters; changes need a ``write`` key."""

from __future__ import annotations

from typing import Annotated, NoReturn

from fastapi import APIRouter, Path, Query, Response
from sqlalchemy.exc import IntegrityError

from api.deps import CacheDep, SessionDep, Writer
from api.kpis import KPI_MODULES
from api.problems import ProblemError
from api.registry import crud
from api.schemas.common import DeviceTypeName, ZoneName, problem_responses
from api.schemas.devices import DeviceCreate, DevicePublic, DevicesPublic, DeviceUpdate
from api.security import Principal
from smartcity import audit
from smartcity.contract import DEVICE_ID_PATTERN
from smartcity.registry.models import Device

router = APIRouter(prefix="/v1/devices", tags=["devices"])
DeviceIdPath = Annotated[str, Path(pattern=DEVICE_ID_PATTERN, description="e.g. sl-00001")]
BBOX = r"^-?\d{1,3}(\.\d+)?(,-?\d{1,3}(\.\d+)?){3}$"


def parse_bbox(text: str | None) -> tuple[float, float, float, float] | None:
    if text is None:
        return None
    west, south, east, north = (float(v) for v in text.split(","))
    if not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):
        raise ProblemError(
            422,
            "bbox must be west,south,east,north in degrees with west <= east and south <= north",
            errors=[{"loc": ["query", "bbox"], "msg": "not a valid bounding box", "type": "bbox"}],
        )
    return west, south, east, north


def check_threshold(device_type: str, threshold: float | None) -> None:
    """Only types whose alerts and KPIs use a per-device threshold (bins) may carry one."""
    if threshold is None or KPI_MODULES[device_type].uses_threshold:
        return
    kinds = ", ".join(t for t, m in KPI_MODULES.items() if m.uses_threshold)
    raise ProblemError(
        422,
        f"a threshold applies only to {kinds}, not to a {device_type}",
        errors=[{"loc": ["body", "threshold"], "msg": "not for this device type",
                 "type": "value_error"}],
    )  # fmt: skip


def _found(session: SessionDep, device_id: str) -> Device:
    device = crud.get_device(session, device_id)
    if device is None:
        raise ProblemError(404, f"device {device_id!r} is not in the registry")
    return device


def _to_change(session: SessionDep, device_id: str, who: Principal, action: str) -> Device:
    """The device ``who`` wants to change; asking for an unknown one is recorded as refused."""
    device = crud.get_device(session, device_id)
    if device is None:
        _refuse(
            session, who, action, device_id, 404, f"device {device_id!r} is not in the registry"
        )
    return device


def _record(session: SessionDep, who: Principal, action: str, device_id: str,
            detail: dict[str, object]) -> None:  # fmt: skip
    """Record a change before crud makes it: crud's commit stores both, or neither."""
    audit.record(session, actor=audit.key_actor(who.key_id), action=action, device_id=device_id,
                 detail=detail)  # fmt: skip


def _refuse(
    session: SessionDep, who: Principal, action: str, device_id: str, status: int, why: str
) -> NoReturn:
    """Record a refused change (unknown device, duplicate id) and answer ``status``."""
    session.rollback()
    audit.record(session, actor=audit.key_actor(who.key_id), action=action, device_id=device_id,
                 outcome=f"refused: {why}")  # fmt: skip
    session.commit()
    raise ProblemError(status, why)


@router.get("", summary="Registered devices, filtered by type, zone and location")
def list_devices(
    session: SessionDep,
    device_type: DeviceTypeName | None = None,
    zone: ZoneName | None = None,
    bbox: Annotated[
        str | None,
        Query(
            pattern=BBOX, description="west,south,east,north (WGS84), e.g. 10.0,45.12,10.05,45.15"
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> DevicesPublic:
    where = crud.DeviceFilter(device_type, zone, parse_bbox(bbox))
    rows, total = crud.list_devices(session, where, limit, offset)
    return DevicesPublic(data=[DevicePublic.model_validate(r) for r in rows], count=total)


@router.post(
    "",
    status_code=201,
    summary="Register a device (write scope)",
    responses=problem_responses(401, 403, 409, 422),
)
def create_device(
    new: DeviceCreate, session: SessionDep, who: Writer, cache: CacheDep
) -> DevicePublic:
    action, device_id = "device.create", new.device_id
    if crud.get_device(session, device_id) is not None:
        _refuse(session, who, action, device_id, 409,
                f"device {device_id!r} is already registered; PATCH it")  # fmt: skip
    check_threshold(new.device_type, new.threshold)
    _record(session, who, action, device_id, new.model_dump(mode="json", exclude_none=True))
    try:
        device = crud.create_device(session, new)
    except IntegrityError:  # registered by someone else since the check, or its DevEUI taken
        _refuse(session, who, action, device_id, 409,
                f"device {device_id!r} or its DevEUI is already registered")  # fmt: skip
    cache.invalidate()
    return DevicePublic.model_validate(device)


@router.get("/{device_id}", summary="One registered device", responses=problem_responses(404))
def get_device(device_id: DeviceIdPath, session: SessionDep) -> DevicePublic:
    return DevicePublic.model_validate(_found(session, device_id))


@router.patch(
    "/{device_id}",
    summary="Change a registered device (write scope)",
    responses=problem_responses(401, 403, 404, 422),
)
def update_device(
    device_id: DeviceIdPath, change: DeviceUpdate, session: SessionDep, who: Writer,
    cache: CacheDep,
) -> DevicePublic:  # fmt: skip
    device = _to_change(session, device_id, who, "device.update")
    check_threshold(
        change.device_type or device.device_type,
        change.threshold if "threshold" in change.model_fields_set else device.threshold,
    )
    _record(session, who, "device.update", device_id, change.model_dump(mode="json",
            exclude_unset=True))  # fmt: skip
    device = crud.update_device(session, device, change)
    cache.invalidate()
    return DevicePublic.model_validate(device)


@router.delete(
    "/{device_id}",
    status_code=204,
    summary="Remove a device from the registry (write scope)",
    responses=problem_responses(401, 403, 404),
)
def delete_device(
    device_id: DeviceIdPath, session: SessionDep, who: Writer, cache: CacheDep
) -> Response:
    device = _to_change(session, device_id, who, "device.delete")
    _record(session, who, "device.delete", device_id,
            {"device_type": device.device_type, "zone": device.zone})  # fmt: skip
    crud.delete_device(session, device)
    cache.invalidate()
    return Response(status_code=204)
