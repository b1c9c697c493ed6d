"""Commands to devices (``operate`` scope) and their states."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request

from api import commands
from api.deps import InfluxDep, Operator, Reader, SessionDep, SettingsDep
from api.problems import ProblemError
from api.registry import crud
from api.schemas.commands import CommandOut, CommandRequest, CommandsOut
from api.schemas.common import problem_responses
from smartcity import audit
from smartcity.commands import CommandError
from smartcity.contract import DEVICE_ID_PATTERN
from smartcity.registry.models import Device

router = APIRouter(prefix="/v1/devices", tags=["commands"])
DeviceIdPath = Annotated[str, Path(pattern=DEVICE_ID_PATTERN, description="e.g. sl-00001")]


def _found(session: SessionDep, device_id: str) -> Device:
    device = crud.get_device(session, device_id)
    if device is None:
        raise ProblemError(404, f"device {device_id!r} is not in the registry")
    return device


@router.post(
    "/{device_id}/commands",
    status_code=202,
    summary="Send a command to a device (operate scope)",
    description="Validated against the device type's commands before anything is published "
    "(an unknown command or a bad argument is 422 and nothing is sent); then published on the "
    "device's cmd topic. The device's answer turns the state to applied or rejected; with no "
    "answer within the API's --command-timeout it shows as expired.",
    responses=problem_responses(401, 403, 404, 422, 503),
)
async def send_command(
    device_id: DeviceIdPath,
    body: CommandRequest,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    who: Operator,
) -> CommandOut:
    device = _found(session, device_id)
    try:
        state = await commands.send(
            session,
            request.app.state.command_sender,
            request.app.state.command_writer,
            settings,
            device,
            body.name,
            body.args,
            audit.key_actor(who.key_id),
        )
    except CommandError as exc:
        raise ProblemError(422, exc.reason, errors=exc.errors) from None
    except commands.SendFailed as exc:
        raise ProblemError(503, str(exc), {"Retry-After": "5"}) from None
    return CommandOut.of(device_id, state)


@router.get(
    "/{device_id}/commands",
    summary="A device's recent commands and their states (any API key)",
    responses=problem_responses(401, 404, 503),
)
async def list_commands(
    device_id: DeviceIdPath,
    session: SessionDep,
    settings: SettingsDep,
    influx: InfluxDep,
    _who: Reader,
) -> CommandsOut:
    _found(session, device_id)
    found = await commands.recent(influx, device_id, datetime.now(UTC), settings.command_timeout)
    return CommandsOut(data=[CommandOut.of(device_id, s) for s in found], count=len(found))
