"""EV chargers' OCPP passwords and drivers' idTags: only salted hashes are ever stored.

An OCPP 1.6 charger logs in to the central system with HTTP Basic (security profiles 1 and 2):
username = its charge point id, password = the one provisioning issued
(:func:`smartcity.provisioning.provision`). The registry keeps a PBKDF2 hash with a salt of its
own per charger, so a copy of the registry gives no charger's password away.

An idTag identifies a driver (an RFID card): personal data. The gateway keeps and publishes only
an HMAC of it under a key of its own (its state folder), so the same card gives the same hash
(sessions per card can be counted) while the card number cannot be read back or guessed by
someone without the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

#: PBKDF2 rounds: the passwords are random (``new_password``, 192 bits), so the hash needs no
#: slow-down against guessing; this many rounds keep 1,000 chargers logging in at once cheap.
ROUNDS = 10_000
_SCHEME = "pbkdf2-sha256"


def new_password() -> str:
    """A charger's OCPP password: 32 URL-safe characters (OCPP 1.6 allows 16-40)."""
    return secrets.token_urlsafe(24)


def hash_password(password: str, rounds: int = ROUNDS) -> str:
    """``pbkdf2-sha256$rounds$salt$hash``, the salt new for every call."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, rounds)
    return f"{_SCHEME}${rounds}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` is the one ``stored`` was made from (constant-time compare)."""
    try:
        scheme, rounds, salt, digest = stored.split("$")
        if scheme != _SCHEME:
            return False
        got = hashlib.pbkdf2_hmac("sha256", password.encode(), _unb64(salt), int(rounds))
        return hmac.compare_digest(got, _unb64(digest))
    except ValueError:
        return False


def id_tag_hash(id_tag: str, key: bytes) -> str:
    """The idTag's keyed hash (32 hex characters): what is stored instead of the idTag."""
    return hmac.new(key, id_tag.encode(), hashlib.sha256).hexdigest()[:32]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
