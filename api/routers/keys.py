"""API keys (admin scope): create, list, revoke. The secret is only ever shown at creation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from api.deps import Admin, SessionDep
from api.problems import ProblemError
from api.registry import crud
from api.schemas.common import problem_responses
from api.schemas.keys import KeyCreate, KeyCreated, KeyPublic
from api.security import create_key
from smartcity.audit import key_actor

router = APIRouter(prefix="/v1/keys", tags=["keys"], responses=problem_responses(401, 403))


@router.post("", status_code=201, summary="Create an API key", responses=problem_responses(422))
def create(new: KeyCreate, session: SessionDep, who: Admin) -> KeyCreated:
    row, key = create_key(session, new.name, new.scope, actor=key_actor(who.key_id))
    return KeyCreated(**KeyPublic.model_validate(row).model_dump(), key=key)


@router.get("", summary="All API keys (without secrets)")
def list_keys(session: SessionDep, _who: Admin) -> list[KeyPublic]:
    return [KeyPublic.model_validate(k) for k in crud.list_keys(session)]


@router.delete(
    "/{key_id}", status_code=204, summary="Revoke an API key", responses=problem_responses(404)
)
def revoke(
    key_id: Annotated[str, Path(pattern=r"^[0-9a-f]{12}$")],
    session: SessionDep,
    who: Admin,
    request: Request,
) -> Response:
    if crud.revoke_key(session, key_id, key_actor(who.key_id)) is None:
        raise ProblemError(404, f"no API key {key_id!r}")
    request.app.state.keys.forget(key_id)
    return Response(status_code=204)
