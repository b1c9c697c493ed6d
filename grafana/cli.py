"""``smartcity grafana build|push``: boards and alert rules as code, and their upload."""

from __future__ import annotations

import argparse
from typing import Any

from grafana.settings import GrafanaSettings
from smartcity.settings import add_arguments, load


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "grafana",
        help="generate the Grafana boards and alert rules, or upload them to a Grafana",
        description="Boards, alert rules and provisioning are generated from the device models "
        "into grafana/dashboards and grafana/provisioning (committed; docker compose mounts "
        "them). 'push' uploads them to a running Grafana over its HTTP API.",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser(
        "build",
        parents=[common],
        help="regenerate the committed dashboard JSON and provisioning YAML",
        description="Regenerate grafana/dashboards/*/*.json and grafana/provisioning/*/*.yaml "
        "from the code. With --check, write nothing and fail if they are stale.",
    )
    build.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 listing the files a build would change (for CI)",
    )
    build.set_defaults(func=run_build)
    push = actions.add_parser(
        "push",
        parents=[common],
        help="upload data source, folders, boards and alert rules to a running Grafana",
        description="Create or update, by uid, the InfluxDB data source (its URL as Grafana "
        "reaches InfluxDB: --influx-url), the folders, every board and every alert rule. "
        "Example: smartcity grafana push --url http://localhost:3000 --token glsa_...",
    )
    add_arguments(push, GrafanaSettings)
    push.set_defaults(func=run_push)


def run_build(args: argparse.Namespace) -> int:
    from grafana import build

    if args.check:
        stale = build.stale()
        for path in stale:
            print(f"stale: grafana/{path}")
        if stale:
            print("run: smartcity grafana build")
        return 1 if stale else 0
    for path in build.write():
        print(f"wrote grafana/{path}")
    return 0


def run_push(args: argparse.Namespace) -> int:
    settings = load(GrafanaSettings, args)
    from grafana.push import GrafanaError, push
    from smartcity.errors import UserError

    try:
        push(settings)
    except GrafanaError as exc:
        raise UserError(str(exc)) from None
    return 0
