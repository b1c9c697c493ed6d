"""``smartcity``: one command, a subcommand per component.

Each component registers its own subcommand from a light ``cli`` module that imports only its
settings; the heavy imports happen when the subcommand runs, so an edge device without FastAPI
still has a working ``smartcity edge``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable, Sequence
from typing import TypeVar, overload

from smartcity import __version__, logs
from smartcity.errors import UserError
from smartcity.settings import CONFIG_ENV, SettingsError

#: Each command's module, with a ``register(subparsers, common)`` function, in the order
#: ``--help`` lists them.
COMMAND_MODULES = {
    "up": "stack.up",
    "simulate": "simulators.cli",
    "ingest": "ingest.cli",
    "edge": "edge.cli",
    "lorawan": "edge.lorawan.cli",
    "ocpp": "edge.ocpp.cli",
    "api": "api.cli",
    "command": "api.command_cli",
    "grafana": "grafana.cli",
    "broker": "stack.broker_cli",
    "devices": "stack.devices_cli",
    "storage": "stack.storage_cli",
    "backup": "stack.backup",
    "restore": "stack.backup",
}

#: The pyproject extra each command needs, where it is not named like the command.
EXTRAS = {"up": "server", "devices": "server", "command": "api", "storage": "server",
          "backup": "server", "restore": "server", "ocpp": "ocpp"}  # fmt: skip

N = TypeVar("N")


class CommandParser(argparse.ArgumentParser):
    """A subcommand's parser, which reports arguments it does not know with its own usage.

    Plain argparse hands a subcommand's unknown arguments up to the top-level parser, which
    then prints the top-level usage: no help for the command that was mistyped. Subcommands
    of subcommands get this class too (``add_subparsers`` uses the parent's class).
    """

    # the overloads of argparse's own signature (typeshed's), so the override stays compatible
    @overload
    def parse_known_args(
        self, args: Iterable[str] | None = None, namespace: None = None
    ) -> tuple[argparse.Namespace, list[str]]: ...
    @overload
    def parse_known_args(self, args: Iterable[str] | None, namespace: N) -> tuple[N, list[str]]: ...
    @overload
    def parse_known_args(self, *, namespace: N) -> tuple[N, list[str]]: ...

    def parse_known_args(
        self, args: Iterable[str] | None = None, namespace: object = None
    ) -> tuple[object, list[str]]:
        parsed, unknown = super().parse_known_args(args, namespace)
        if unknown:
            self.error(f"unrecognized arguments: {' '.join(unknown)}")
        return parsed, unknown


def common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("common options")
    group.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="TOML config file: top-level keys for every component, [section] for one "
        f"[env {CONFIG_ENV}]",
    )
    group.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    group.add_argument("--log-format", default="logfmt", choices=["logfmt", "json"])
    return common


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser; for a command line naming a command, only that command's module is imported
    (an edge agent then never loads the other components' settings)."""
    parser = argparse.ArgumentParser(
        prog="smartcity",
        description="Cremona smart-city data platform: edge agents, ingester, API, dashboards, "
        "simulators. Every setting is a flag, a SMARTCITY_* variable or a config-file key.",
    )
    parser.add_argument("--version", action="version", version=f"smartcity {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=CommandParser
    )
    common = common_options()
    chosen = [COMMAND_MODULES[argv[0]]] if argv and argv[0] in COMMAND_MODULES else None
    # a module may serve several commands (backup and restore): registered once
    for name in chosen or dict.fromkeys(COMMAND_MODULES.values()):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] == name.split(".")[0]:
                continue  # component not installed in this deployment
            if chosen is None:
                continue  # its packages are not installed here (an edge controller's `--help`)
            command = argv[0]
            extra = EXTRAS.get(command, command)
            raise SystemExit(
                f"smartcity {command}: missing Python package {exc.name!r}; install this "
                f"command's extra: pip install 'smartcity-cremona[{extra}]' (in a checkout: "
                f".venv/bin/pip install -e '.[{extra}]')"
            ) from None
        module.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import os

    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.config is None:
        args.config = os.environ.get(CONFIG_ENV)
    logs.configure(args.log_level, args.log_format)
    try:
        return int(args.func(args) or 0)
    except (SettingsError, UserError) as exc:
        print(f"smartcity {args.command}: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, SettingsError) else 1
    except ModuleNotFoundError as exc:
        extra = EXTRAS.get(args.command, args.command)
        print(
            f"smartcity {args.command}: missing Python package {exc.name!r}; install this "
            f"command's extra: pip install 'smartcity-cremona[{extra}]' (in a checkout: "
            f".venv/bin/pip install -e '.[{extra}]')",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
