"""What the compute blueprints share: settings, the RPC proxies, finding records, links."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from flask import current_app, request

from control.common import errors
from control.common.app import context
from control.common.app import is_admin as is_admin
from control.common.app import project_id as project_id
from control.common.app import respond as respond

QUOTA_RESOURCES = ("instances", "cores", "ram", "key_pairs", "metadata_items")
DEFAULT_QUOTAS = {
    "instances": 10,
    "cores": 20,
    "ram": 51200,
    "key_pairs": 100,
    "metadata_items": 128,
}


@dataclass
class ComputeSettings:
    """The ``[compute]``, ``[quota]``, ``[image]``, ``[network]`` and ``[volume]`` sections of
    compute.conf."""

    quota_defaults: dict[str, int]
    service_down_time: int = 60
    default_availability_zone: str = "nova"
    image_api_url: str | None = None
    network_api_url: str | None = None
    volume_api_url: str | None = None
    auth_url: str = ""
    limit_max: int = 1000
    rpc: Any = None  # control.compute.rpc.RPCAPIs
    extra: dict[str, Any] = field(default_factory=dict)


def settings() -> ComputeSettings:
    found: ComputeSettings = current_app.extensions["cirrus.compute"]
    return found


def user_id() -> str:
    return context().user_id or ""


def base_url() -> str:
    return f"{request.host_url.rstrip('/')}/v2.1"


def links(collection: str, ident: str) -> list[dict[str, str]]:
    root = request.host_url.rstrip("/")
    return [
        {"rel": "self", "href": f"{root}/v2.1/{collection}/{ident}"},
        {"rel": "bookmark", "href": f"{root}/{collection}/{ident}"},
    ]


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def query_int(name: str, minimum: int = 0) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise errors.BadRequest(f"Invalid input for query parameter '{name}': {raw!r}") from None
    if value < minimum:
        raise errors.BadRequest(f"Invalid input for query parameter '{name}': must be >= {minimum}")
    return value


def query_bool(name: str) -> bool | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on", "t", "y"):
        return True
    if lowered in ("0", "false", "no", "off", "f", "n"):
        return False
    raise errors.BadRequest(f"Invalid input for query parameter '{name}': {raw!r}")
