"""The audit trail: who did what, when, on which device, with what outcome.

Every component that changes the platform (the API, ``smartcity devices``, commands) records its
action here, in the registry database (SQLite or PostgreSQL), in the same transaction as the
change itself, so the record and the change are stored together or not at all. Entries are
append-only: this module offers no update or delete, and SQLAlchemy refuses to flush one.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy import event
from sqlalchemy.orm import Session, UOWTransaction

from smartcity.registry.models import AuditEntry

#: Longest ``detail`` kept; details are short descriptions, never payloads.
DETAIL_CHARS = 2000


class AuditTampering(RuntimeError):
    """Something tried to change or delete an audit entry."""


def key_actor(key_id: str) -> str:
    """The actor of an action made with an API key."""
    return f"key:{key_id}"


def cli_actor() -> str:
    """The actor of an action made from a command line on a server: its OS user."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (a container's numeric user)
        return "cli:unknown"


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    outcome: str = "ok",
    device_id: str | None = None,
    detail: str | Mapping[str, object] = "",
) -> AuditEntry:
    """Add an entry to ``session``; the caller's commit stores it with the change it records."""
    text = detail if isinstance(detail, str) else json.dumps(detail, default=str, sort_keys=True)
    entry = AuditEntry(
        at=datetime.now(UTC),
        actor=actor[:120],
        action=action[:64],
        device_id=device_id,
        outcome=outcome[:200],
        detail=text[:DETAIL_CHARS],
    )
    session.add(entry)
    return entry


@event.listens_for(Session, "before_flush")
def _refuse_changes(session: Session, _context: UOWTransaction, _instances: object) -> None:
    """Audit entries are only ever added: a flush that would change or delete one fails."""
    for obj in (*session.dirty, *session.deleted):
        if isinstance(obj, AuditEntry) and (obj in session.deleted or session.is_modified(obj)):
            raise AuditTampering("audit entries are append-only: no update or delete")
