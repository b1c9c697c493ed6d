"""API keys: random secrets shown once, kept only as SHA-256, checked in constant time.

A key is ``sck_<key id>_<secret>`` with a 12-hex-digit id and a 256-bit random secret. A fast
hash is enough for secrets of that entropy (there is nothing to guess, unlike a password), and
the id in clear lets the server fetch exactly one row to compare against.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from smartcity import audit
from smartcity.registry.models import ApiKey

log = logging.getLogger("smartcity.api")

PREFIX = "sck_"
ID_HEX = 12
#: ``operate`` (send commands to devices) ranks above ``read`` and below ``write``: acting on a
#: device changes its state for a while, reversibly, and every command is validated by the
#: device and recorded; changing the registry decides which devices exist and where, which is
#: more. So an operations room's key can dim a street without being able to edit the registry,
#: and a maintenance system trusted with the registry may also act on its devices.
SCOPES = ("read", "operate", "write", "admin")
#: A scope includes those before it: admin can write, write can operate, operate can read.
RANK = {scope: i for i, scope in enumerate(SCOPES)}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified key belongs to."""

    key_id: str
    name: str
    scope: str

    def allows(self, needed: str) -> bool:
        return RANK[self.scope] >= RANK[needed]


def new_key() -> tuple[str, str, str]:
    """A fresh key: (key id, the full key to hand out, SHA-256 of its secret to store)."""
    key_id = secrets.token_hex(ID_HEX // 2)
    secret = secrets.token_urlsafe(32)
    return key_id, f"{PREFIX}{key_id}_{secret}", digest(secret)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(key: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    if len(key) < len(PREFIX) + ID_HEX + 2 or len(key) > 200 or not key.startswith(PREFIX):
        return None
    key_id, sep, secret = key[len(PREFIX) :].partition("_")
    if len(key_id) != ID_HEX or not sep or not secret:
        return None
    return key_id, secret


def create_key(
    session: Session, name: str, scope: str, key: str | None = None, actor: str | None = None
) -> tuple[ApiKey, str]:
    """Store a new key (or a given bootstrap ``key``); returns the row and the key to hand out.

    With an ``actor`` (who asked for the key), a new key's creation is recorded in the audit
    trail in the same commit as the key (a bootstrap key ensured again at start-up is not new).
    """
    if scope not in RANK:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    if key is None:
        key_id, key, hashed = new_key()
    else:
        key_id = hashlib.sha256(key.encode()).hexdigest()[:ID_HEX]
        hashed = digest(key)
    row = ApiKey(
        key_id=key_id, name=name, scope=scope, secret_sha256=hashed, created_at=datetime.now(UTC)
    )
    if actor is not None and session.get(ApiKey, key_id) is None:
        audit.record(
            session,
            actor=actor,
            action="key.create",
            detail={"key_id": key_id, "name": name, "scope": scope},
        )
    session.merge(row)
    session.commit()
    return row, key


class KeyStore:
    """Verifies keys against the registry, caching rows briefly so a request costs no query.

    Revocation through this store takes effect at once; through another process (the CLI, a
    second API worker) within ``ttl`` seconds.

    A key's last use is written to the registry at most once per ``used_every`` seconds per key
    (and per worker), not on every request: a write per request would turn every read into a
    write transaction (SQLite has a single writer, PostgreSQL would churn the row), while a
    minute is precise enough to tell which keys are still in use.
    """

    def __init__(self, engine: Engine, ttl: float = 30.0, used_every: float = 60.0) -> None:
        self.engine = engine
        self.ttl = ttl
        self.used_every = used_every
        self._rows: dict[str, tuple[float, ApiKey | None]] = {}
        self._used: dict[str, float] = {}
        self._lock = threading.Lock()

    def verify(self, key: str) -> Principal | None:
        """The key's principal, or None if it is malformed, unknown, revoked or wrong."""
        parts = split_key(key)
        if parts is not None:
            key_id, secret = parts
            hashed = digest(secret)
        else:  # a bootstrap admin key chosen by the operator has no id of ours
            key_id, hashed = hashlib.sha256(key.encode()).hexdigest()[:ID_HEX], digest(key)
        row = self._row(key_id)
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(row.secret_sha256, hashed):
            return None
        self._note_use(row.key_id)
        return Principal(row.key_id, row.name, row.scope)

    def _note_use(self, key_id: str) -> None:
        """Store the key's last use, unless this store did within ``used_every`` seconds. Runs
        in the caller's thread (``verify`` is called off the event loop); a failed write is
        logged and the request goes on: the last use is information, not access control."""
        now = time.monotonic()
        with self._lock:
            last = self._used.get(key_id)
            if last is not None and now - last < self.used_every:
                return
            if len(self._used) > 10_000:  # only verified keys get here, but stay bounded
                self._used.clear()
            self._used[key_id] = now
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    update(ApiKey)
                    .where(ApiKey.key_id == key_id)
                    .values(last_used_at=datetime.now(UTC))
                )
        except SQLAlchemyError as exc:
            log.warning("could not store an API key's last use", extra={"key_id": key_id,
                        "error": str(exc)})  # fmt: skip

    def _row(self, key_id: str) -> ApiKey | None:
        now = time.monotonic()
        with self._lock:
            cached = self._rows.get(key_id)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        with Session(self.engine, expire_on_commit=False) as session:
            row = session.scalar(select(ApiKey).where(ApiKey.key_id == key_id))
            if row is not None:
                session.expunge(row)
        with self._lock:
            if len(self._rows) > 10_000:  # unknown ids from scanners must not grow memory
                self._rows.clear()
            self._rows[key_id] = (now, row)
        return row

    def forget(self, key_id: str) -> None:
        with self._lock:
            self._rows.pop(key_id, None)
