"""Identity's commands for ``cirrus-manage identity ...``: bootstrap, fernet-setup and
fernet-rotate."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from control.common import db
from control.common.config import Config
from control.identity import bootstrap as bootstrap_mod
from control.identity.fernet import KeyRepository


def _keys(conf: Config) -> KeyRepository:
    return KeyRepository(
        conf.get("fernet_tokens", "key_repository", "/etc/cirrus/fernet-keys"),
        conf.get_int("fernet_tokens", "max_active_keys", 3),
    )


def _read_password(args: argparse.Namespace) -> str:
    if args.bootstrap_password_file:
        with open(args.bootstrap_password_file, encoding="utf-8") as handle:
            return handle.read().strip()
    password = os.environ.get("CIRRUS_BOOTSTRAP_PASSWORD", "")
    if not password:
        raise SystemExit(
            "cirrus-manage: give the admin password with --bootstrap-password-file FILE "
            "or the CIRRUS_BOOTSTRAP_PASSWORD environment variable"
        )
    return password


def _bootstrap(args: argparse.Namespace, conf: Config) -> int:
    endpoints = {
        interface: url
        for interface, url in (
            ("public", args.bootstrap_public_url),
            ("internal", args.bootstrap_internal_url),
            ("admin", args.bootstrap_admin_url),
        )
        if url
    }
    options = bootstrap_mod.BootstrapOptions(
        admin_password=_read_password(args),
        admin_username=args.bootstrap_username,
        project_name=args.bootstrap_project_name,
        region_id=args.bootstrap_region_id,
        identity_endpoints=endpoints,
        password_rounds=conf.get_int("identity", "password_hash_rounds", 12),
    )
    database = db.Database(conf.get("database", "connection"))
    try:
        with database.transaction() as sess:
            result = bootstrap_mod.bootstrap(sess, options)
    finally:
        database.dispose()
    if result.changed:
        print("bootstrap changed: " + ", ".join(result.changed))
    else:
        print("bootstrap: nothing to change")
    return 0


def _fernet_setup(args: argparse.Namespace, conf: Config) -> int:
    repo = _keys(conf)
    created = repo.setup()
    print(f"{repo.path}: {'created' if created else 'already set up'}")
    return 0


def _fernet_rotate(args: argparse.Namespace, conf: Config) -> int:
    repo = _keys(conf)
    primary = repo.rotate()
    print(f"{repo.path}: rotated; primary key is now {primary}")
    return 0


def register(commands: Any) -> None:
    boot = commands.add_parser(
        "bootstrap", help="create the admin user, project, roles and catalog"
    )
    boot.add_argument("--bootstrap-username", default="admin")
    boot.add_argument("--bootstrap-project-name", default="admin")
    boot.add_argument(
        "--bootstrap-password-file",
        help="file holding the admin password (or set CIRRUS_BOOTSTRAP_PASSWORD)",
    )
    boot.add_argument("--bootstrap-region-id", default="RegionOne")
    boot.add_argument("--bootstrap-public-url")
    boot.add_argument("--bootstrap-internal-url")
    boot.add_argument("--bootstrap-admin-url")
    boot.set_defaults(func=_bootstrap)
    setup = commands.add_parser("fernet-setup", help="create the Fernet key repository")
    setup.set_defaults(func=_fernet_setup)
    rotate = commands.add_parser("fernet-rotate", help="rotate the Fernet keys")
    rotate.set_defaults(func=_fernet_rotate)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use cirrus-manage identity ...")
