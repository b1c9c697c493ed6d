"""Device credentials (admin scope): a registered device's broker login, made, rotated, revoked.

``POST /v1/devices/{id}/credentials`` makes the broker client of a device registered with
``POST /v1/devices`` (201); with ``?rotate=true`` it gives a device that has one a new password
(200), the old one refused from then on. Never both at once: re-running a provisioning script
must not cut off a device already installed, so a device that has a login gets 409 without
``rotate``. The password is in that answer only; it is kept nowhere (the broker keeps a hash).
``DELETE`` revokes: the client is disabled (a connected one is disconnected at once) and the
device marked revoked; a revoked device gets no credentials again (409).

The broker is changed as its admin (``--broker-admin-password-file``, the broker at
``--mqtt-url``), in step with the registry: see :mod:`smartcity.provisioning`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field

from api.deps import Admin, SessionDep, SettingsDep
from api.problems import ProblemError
from api.schemas.common import DeviceId, problem_responses
from api.settings import ApiSettings
from smartcity import provisioning
from smartcity.audit import key_actor
from smartcity.broker_accounts import Admin as BrokerAdmin
from smartcity.broker_accounts import BrokerAccountError
from smartcity.contract import DEVICE_ID_PATTERN

router = APIRouter(
    prefix="/v1/devices", tags=["devices"], responses=problem_responses(401, 403, 404, 409)
)
DeviceIdPath = Annotated[str, Path(pattern=DEVICE_ID_PATTERN, description="e.g. sl-00001")]

#: Each refusal of :mod:`smartcity.provisioning` as an HTTP status.
STATUS = {
    provisioning.UnknownDevice: 404,
    provisioning.Duplicate: 409,
    provisioning.Conflict: 409,
    provisioning.InvalidDevice: 422,
    provisioning.Failed: 503,
}


class CredentialsIssued(BaseModel):
    """A device's broker login. Shown once: the platform keeps no copy of the password."""

    device_id: DeviceId
    device_type: str
    username: str = Field(description="The broker username: the device id.")
    client_id: str = Field(description="The only MQTT client id the broker accepts for it.")
    password: str = Field(description="Shown only in this answer.")
    city: str = Field(description="The city level of its topics.")
    ocpp_password: str | None = Field(
        None,
        description="EV chargers: the password it logs in to the OCPP central system with "
        "(charge point id = device id; docs/ocpp.md). Shown only in this answer.",
    )


def _broker(settings: ApiSettings) -> BrokerAdmin:
    try:
        return BrokerAdmin.from_files(
            settings.mqtt_url, settings.broker_admin_password_file, settings.broker_ca_file
        )
    except BrokerAccountError as exc:
        raise ProblemError(
            503, f"the API cannot administer the broker: {exc} (--broker-admin-password-file)"
        ) from None


def _refused(exc: provisioning.ProvisioningError) -> ProblemError:
    return ProblemError(STATUS.get(type(exc), 500), str(exc))


@router.post(
    "/{device_id}/credentials",
    status_code=201,
    summary="Make (or with rotate=true, rotate) a device's broker login (admin scope)",
    responses={200: {"description": "Rotated: the new password"}, **problem_responses(503)},
)
def issue(
    device_id: DeviceIdPath,
    session: SessionDep,
    who: Admin,
    settings: SettingsDep,
    response: Response,
    rotate: Annotated[
        bool,
        Query(description="Give a device that has a login a new password (the old one is "
              "refused from then on); without it, a device that has one gets 409."),
    ] = False,
) -> CredentialsIssued:  # fmt: skip
    broker = _broker(settings)
    try:
        if rotate:
            creds = provisioning.rotate(
                session, broker, settings.city, device_id, key_actor(who.key_id)
            )
            response.status_code = 200
        else:
            creds = provisioning.add_credentials(
                session, broker, settings.city, device_id, key_actor(who.key_id)
            )
    except provisioning.ProvisioningError as exc:
        raise _refused(exc) from None
    response.headers["Cache-Control"] = "no-store"
    return CredentialsIssued(
        device_id=creds.device_id, device_type=creds.device_type, username=creds.username,
        client_id=creds.device_id, password=creds.password, city=creds.city,
        ocpp_password=creds.ocpp_password,
    )  # fmt: skip


@router.delete(
    "/{device_id}/credentials",
    status_code=204,
    summary="Revoke a device's broker login at once, and mark it revoked (admin scope)",
    responses=problem_responses(503),
)
def revoke(
    device_id: DeviceIdPath, session: SessionDep, who: Admin, settings: SettingsDep
) -> Response:
    broker = _broker(settings)
    try:
        provisioning.revoke(session, broker, device_id, key_actor(who.key_id))
    except provisioning.ProvisioningError as exc:
        raise _refused(exc) from None
    return Response(status_code=204)
