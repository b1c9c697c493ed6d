"""The audit trail's core: entries are stored with the change they record, and never changed."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from smartcity import audit
from smartcity.registry.db import make_engine
from smartcity.registry.models import AuditEntry


def test_an_entry_is_stored_and_cannot_be_changed_or_deleted(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/registry.db")
    with Session(engine) as session:
        audit.record(
            session,
            actor=audit.key_actor("abc123abc123"),
            action="device.update",
            device_id="sl-1",
            detail={"zone": "Po"},
        )
        session.commit()
    with Session(engine) as session:
        entry = session.scalars(select(AuditEntry)).one()
        assert (entry.actor, entry.action, entry.device_id) == (
            "key:abc123abc123",
            "device.update",
            "sl-1",
        )
        assert entry.outcome == "ok"
        assert entry.detail == '{"zone": "Po"}'
        entry.outcome = "forged"
        with pytest.raises(audit.AuditTampering):
            session.commit()
        session.rollback()
        session.delete(session.scalars(select(AuditEntry)).one())
        with pytest.raises(audit.AuditTampering):
            session.commit()
    with Session(engine) as session:
        assert session.scalars(select(AuditEntry.outcome)).all() == ["ok"]
    engine.dispose()
