"""Zone (quartiere) summaries and health."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import StateDep
from api.schemas.common import ZoneName
from api.schemas.zones import ZonesPublic, ZoneSummary
from api.zones import zone_summaries

router = APIRouter(prefix="/v1/zones", tags=["zones"])


@router.get("", summary="Every zone: devices, live figures, alerts and health")
async def list_zones(state: StateDep) -> ZonesPublic:
    return ZonesPublic(data=zone_summaries(state), as_of=state.now)


@router.get("/{zone}", summary="One zone: devices, live figures, alerts and health")
async def get_zone(zone: ZoneName, state: StateDep) -> ZoneSummary:
    return next(z for z in zone_summaries(state) if z.zone == zone)
