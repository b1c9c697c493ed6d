"""The dynamic security plugin's JSON file, written before the broker starts.

``smartcity up`` writes it on the first run and brings the service accounts and their roles up
to date on later ones, keeping every other client and role (the devices added at runtime); the
tests write it for their brokers; ``scripts/compose-env`` writes the seed docker-compose's
broker starts from. Passwords are hashed as the plugin hashes them (PBKDF2-SHA512, 12-byte
salt, 101 iterations, its 2.0 defaults), so the file is exactly one it could have written.
Every secret file here is created with mode 0600, never widened and narrowed afterwards.

Run as ``python -m smartcity.dynsec ENV_FILE [SEED_FILE [CITY]]`` (``scripts/compose-env``) it
completes docker-compose's ``.env`` and writes the compose broker's seed from its passwords.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from smartcity.broker_acl import (
    ADMIN,
    DEFAULT_ACL_ACCESS,
    SERVICE_ACCOUNTS,
    Account,
    dynsec_acls,
    service_accounts,
)

ITERATIONS = 101


def write_secret(path: Path, data: str) -> None:
    """Write ``data`` to ``path``, owner-only (0600) from the moment the file exists.

    A temporary file created with the mode, then renamed over ``path``: no reader ever sees a
    wider mode or half a file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def new_password() -> str:
    return secrets.token_urlsafe(24)


def hashed(password: str) -> dict[str, Any]:
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, ITERATIONS, 64)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": ITERATIONS,
    }


def client_entry(account: Account, password: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"username": account.username, **hashed(password)}
    entry["clientid"] = account.clientid
    entry["roles"] = [{"rolename": account.role}]
    return entry


def role_entry(account: Account) -> dict[str, Any]:
    return {"rolename": account.role, "acls": dynsec_acls(account)}


def config(
    passwords: dict[str, str], city: str, existing: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The plugin's configuration: the service accounts with ``passwords`` and their roles for
    ``city``, plus every client, group and role of ``existing`` that is not a service one."""
    missing = set(SERVICE_ACCOUNTS) - set(passwords)
    if missing:
        raise ValueError(f"no password for the service accounts {sorted(missing)}")
    services = service_accounts(city)
    ours = {a.username for a in services}
    our_roles = {a.role for a in services}
    old = existing or {}
    return {
        "defaultACLAccess": DEFAULT_ACL_ACCESS,
        "clients": [client_entry(a, passwords[a.shares or a.username]) for a in services]
        + [c for c in old.get("clients", []) if c.get("username") not in ours],
        "groups": old.get("groups", []),
        "roles": [role_entry(a) for a in services if a.shares is None]
        + [r for r in old.get("roles", []) if r.get("rolename") not in our_roles],
    }


def write_config(path: Path, passwords: dict[str, str], city: str) -> None:
    """Write (or bring up to date, keeping devices) the plugin's file at ``path``.

    Only while the broker is stopped: the plugin keeps its state in memory and rewrites the file
    on every change, so an edit under a running broker would be lost.
    """
    existing = json.loads(path.read_text()) if path.exists() else None
    write_secret(path, json.dumps(config(passwords, city, existing), indent=1) + "\n")


def env_name(account: str) -> str:
    """docker-compose's variable for a service account's password: ``MQTT_PASSWORD_<NAME>``."""
    return "MQTT_PASSWORD_" + account.upper().replace("-", "_")


#: Where scripts/compose-env puts the broker's seed (and the admin's password beside it).
COMPOSE_SEED = Path("var/compose/dynamic-security.json")


def compose_env(env_file: Path, seed: Path | None, city: str) -> list[str]:
    """Add what docker-compose needs and ``env_file`` lacks (a random password per service
    account, Grafana's admin password, where the broker's seed is), keeping what it has; then
    write the broker's seed from those passwords, and the admin's password beside it. Returns
    the names added."""
    text = env_file.read_text() if env_file.exists() else ""
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    wanted = {env_name(a): new_password() for a in SERVICE_ACCOUNTS}
    wanted["GRAFANA_ADMIN_PASSWORD"] = new_password()
    seed = seed or Path(values.get("MQTT_DYNSEC_SEED", "") or COMPOSE_SEED)
    # a bind mount's source: docker-compose takes a bare relative path for a volume's name
    wanted["MQTT_DYNSEC_SEED"] = str(seed) if seed.is_absolute() else f"./{seed}"
    new = {name: value for name, value in wanted.items() if name not in values}
    if text and not text.endswith("\n"):
        text += "\n"
    write_secret(env_file, text + "".join(f"{k}={v}\n" for k, v in new.items()))
    values |= new
    passwords = {a: values[env_name(a)] for a in SERVICE_ACCOUNTS}
    seed_path = seed if seed.is_absolute() else env_file.parent / seed
    write_secret(seed_path, json.dumps(config(passwords, city), indent=1) + "\n")
    write_secret(seed_path.with_name(ADMIN), passwords[ADMIN] + "\n")
    return list(new)


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 3:
        print("usage: python -m smartcity.dynsec ENV_FILE [SEED_FILE [CITY]]", file=sys.stderr)
        return 2
    env_file = Path(argv[0])
    seed = Path(argv[1]) if len(argv) > 1 and argv[1] else None
    city = argv[2] if len(argv) > 2 else "cremona"
    added = compose_env(env_file, seed, city)
    print(f"{env_file}: added {', '.join(added) or 'nothing (all present)'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
