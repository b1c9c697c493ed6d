"""Alerts: failed lamps, full or burning bins, faulted chargers, silent devices."""

from __future__ import annotations

from fastapi import APIRouter

from api.alerts import build_alerts
from api.deps import StateDep
from api.schemas.alerts import AlertKind, AlertsPublic, Severity
from api.schemas.common import DeviceTypeName, ZoneName

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])


@router.get("", summary="Open alerts, the most severe first")
async def list_alerts(
    state: StateDep,
    kind: AlertKind | None = None,
    severity: Severity | None = None,
    zone: ZoneName | None = None,
    device_type: DeviceTypeName | None = None,
) -> AlertsPublic:
    alerts = [
        a
        for a in build_alerts(state)
        if (kind is None or a.kind == kind)
        and (severity is None or a.severity == severity)
        and (zone is None or a.zone == zone)
        and (device_type is None or a.device_type == device_type)
    ]
    return AlertsPublic(data=alerts, count=len(alerts), as_of=state.now)
