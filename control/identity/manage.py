"""Identity's commands for ``cirrus-manage identity ...``: bootstrap, register-service,
fernet-setup and fernet-rotate."""

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


def _read_password(path: str | None, variable: str, option: str, whose: str) -> str:
    if path:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    password = os.environ.get(variable, "")
    if not password:
        raise SystemExit(
            f"cirrus-manage: give the {whose} password with {option} FILE "
            f"or the {variable} environment variable"
        )
    return password


def _endpoints(public: str | None, internal: str | None, admin: str | None) -> dict[str, str]:
    pairs = (("public", public), ("internal", internal), ("admin", admin))
    return {interface: url for interface, url in pairs if url}


def _apply(conf: Config, what: str, change: Any) -> int:
    """Run ``change(session)`` in one transaction; print what changed (or that nothing did)."""
    database = db.Database(conf.get("database", "connection"))
    try:
        with database.transaction() as sess:
            result = change(sess)
    except LookupError as exc:
        print(f"cirrus-manage: {exc}", file=sys.stderr)
        return 1
    finally:
        database.dispose()
    if result.changed:
        print(f"{what} changed: " + ", ".join(result.changed))
    else:
        print(f"{what}: nothing to change")
    return 0


def _bootstrap(args: argparse.Namespace, conf: Config) -> int:
    options = bootstrap_mod.BootstrapOptions(
        admin_password=_read_password(
            args.bootstrap_password_file,
            "CIRRUS_BOOTSTRAP_PASSWORD",
            "--bootstrap-password-file",
            "admin",
        ),
        admin_username=args.bootstrap_username,
        project_name=args.bootstrap_project_name,
        region_id=args.bootstrap_region_id,
        identity_endpoints=_endpoints(
            args.bootstrap_public_url, args.bootstrap_internal_url, args.bootstrap_admin_url
        ),
        password_rounds=conf.get_int("identity", "password_hash_rounds", 12),
    )
    return _apply(conf, "bootstrap", lambda sess: bootstrap_mod.bootstrap(sess, options))


def _register_service(args: argparse.Namespace, conf: Config) -> int:
    endpoints = _endpoints(args.public_url, args.internal_url, args.admin_url)
    if not endpoints:
        raise SystemExit("cirrus-manage: give at least one of --public-url, --internal-url")
    password = ""
    if args.username:
        password = _read_password(
            args.password_file, "CIRRUS_SERVICE_PASSWORD", "--password-file", args.username
        )
    options = bootstrap_mod.ServiceOptions(
        service_type=args.type,
        service_name=args.name,
        region_id=args.region_id,
        endpoints=endpoints,
        username=args.username or "",
        password=password,
        project_name=args.project_name,
        role_name=args.role,
        password_rounds=conf.get_int("identity", "password_hash_rounds", 12),
    )
    return _apply(
        conf, f"register-service {args.type}", lambda s: bootstrap_mod.register_service(s, options)
    )


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
    reg = commands.add_parser(
        "register-service",
        help="register a service's catalog entry, endpoints and service user",
    )
    reg.add_argument("--type", required=True, help="service type, e.g. compute")
    reg.add_argument("--name", required=True, help="service name, e.g. nova")
    reg.add_argument("--region-id", default="RegionOne")
    reg.add_argument("--public-url")
    reg.add_argument("--internal-url")
    reg.add_argument("--admin-url")
    reg.add_argument("--username", help="the service user (none when omitted)")
    reg.add_argument(
        "--password-file", help="file holding its password (or set CIRRUS_SERVICE_PASSWORD)"
    )
    reg.add_argument("--project-name", default="service")
    reg.add_argument("--role", default="service")
    reg.set_defaults(func=_register_service)
    setup = commands.add_parser("fernet-setup", help="create the Fernet key repository")
    setup.set_defaults(func=_fernet_setup)
    rotate = commands.add_parser("fernet-rotate", help="rotate the Fernet keys")
    rotate.set_defaults(func=_fernet_rotate)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use cirrus-manage identity ...")
