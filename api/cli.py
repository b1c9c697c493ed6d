"""``smartcity api``: serve the API, and manage its keys from the server's shell."""

from __future__ import annotations

import argparse
from typing import Any

from api.settings import ApiSettings
from smartcity.settings import add_arguments, load


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "api",
        parents=[common],
        help="serve the catalogue of smart services, registry, alerts and open data over HTTP",
        description="Serve the API (OpenAPI docs at /docs) and the public page at /. Example: "
        "smartcity api --host 0.0.0.0 --port 8000. Key management: smartcity api create-key "
        "--scope write --name 'AEM maintenance'.",
    )
    add_arguments(p, ApiSettings)
    p.set_defaults(func=serve)
    keys = p.add_subparsers(dest="api_command", metavar="KEY-COMMAND")
    # settings flags (--registry-url, --config...) go before the key command, e.g.
    # smartcity api --registry-url sqlite:///var/registry.db create-key --scope write
    create = keys.add_parser("create-key", help="create an API key and print it (shown once)")
    create.add_argument("--scope", required=True, choices=["read", "operate", "write", "admin"])
    create.add_argument("--name", default="cli", help="who or what will use the key")
    create.set_defaults(func=create_key)
    listing = keys.add_parser("list-keys", help="list API keys (never their secrets)")
    listing.set_defaults(func=list_keys)
    revoke = keys.add_parser("revoke-key", help="revoke an API key by its id")
    revoke.add_argument("key_id", help="the 12 hex digits after 'sck_'")
    revoke.set_defaults(func=revoke_key)


def serve(args: argparse.Namespace) -> int:
    settings = load(ApiSettings, args)
    import uvicorn

    from api.app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # keep smartcity's logging set-up
        # forwarded headers only from the configured proxies: uvicorn's own default trusts
        # loopback, where anyone on the machine can claim any address to the rate limiter
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or None,
        server_header=False,
    )
    return 0


def _session(args: argparse.Namespace) -> Any:
    from sqlalchemy.orm import Session

    from smartcity.registry.db import make_engine

    return Session(make_engine(load(ApiSettings, args).registry_url))


def create_key(args: argparse.Namespace) -> int:
    from api import security
    from smartcity.audit import cli_actor

    with _session(args) as session:
        row, key = security.create_key(session, args.name, args.scope, actor=cli_actor())
    print(key)
    print(f"key id {row.key_id}, scope {row.scope}: store the key now, it is not kept", flush=True)
    return 0


def list_keys(args: argparse.Namespace) -> int:
    from api.registry import crud

    with _session(args) as session:
        for k in crud.list_keys(session):
            state = f"revoked {k.revoked_at:%Y-%m-%d}" if k.revoked_at else "active"
            used = f"used {k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "never used"
            print(f"{k.key_id}  {k.scope:<5}  {state:<18}  {used:<21}  {k.name}")
    return 0


def revoke_key(args: argparse.Namespace) -> int:
    from api.registry import crud
    from smartcity.audit import cli_actor
    from smartcity.errors import UserError

    with _session(args) as session:
        if crud.revoke_key(session, args.key_id, cli_actor()) is None:
            raise UserError(f"no API key {args.key_id!r}; 'smartcity api list-keys' shows them")
    print(f"revoked {args.key_id}")
    return 0
