"""``cirrus-manage <service> <command>``: the operator's command line for each service.

Every service gets ``db-sync``; a service adds its own commands by exposing
``control.<service>.manage.register(subparsers)`` where each parser sets ``func(args, config)``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Any

from control.common import config as config_mod
from control.common import log, migrate

SERVICES = ["identity", "image", "compute", "network", "volume"]

LOG = logging.getLogger("cirrus.manage")


def _db_sync(args: argparse.Namespace, conf: config_mod.Config) -> int:
    url = conf.get("database", "connection")
    before = migrate.current_revision(args.service, url)
    migrate.upgrade(args.service, url)
    after = migrate.current_revision(args.service, url)
    if before == after:
        print(f"{args.service}: no change; database at revision {after}")
    else:
        print(f"{args.service}: upgraded from {before or 'empty'}; database at revision {after}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cirrus-manage", description=__doc__)
    parser.add_argument(
        "--config-file", help="configuration file (default /etc/cirrus/<service>.conf)"
    )
    services = parser.add_subparsers(dest="service", required=True, metavar="SERVICE")
    for service in SERVICES:
        service_parser = services.add_parser(service, help=f"manage the {service} service")
        commands = service_parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
        sync = commands.add_parser("db-sync", help="apply the database migrations")
        sync.set_defaults(func=_db_sync)
        try:
            module: Any = importlib.import_module(f"control.{service}.manage")
        except ModuleNotFoundError:
            continue
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    log.setup("WARNING")
    args = build_parser().parse_args(argv)
    try:
        conf = config_mod.load(
            args.service, args.config_file, required=args.config_file is not None
        )
        result: int = args.func(args, conf)
    except config_mod.ConfigError as exc:
        print(f"cirrus-manage: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
