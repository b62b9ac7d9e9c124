"""What the compute blueprints share: settings, the RPC proxies, finding records, links, the
image look-up (create and ``block_device_mapping_v2``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import requests
from flask import current_app, request

from control.common import catalog, errors
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


def image_api_url() -> str:
    found = settings()
    if found.image_api_url:
        return found.image_api_url.rstrip("/")
    token = request.headers.get("X-Auth-Token", "")
    try:
        return catalog.public_endpoint(found.auth_url, token, "image")
    except catalog.CatalogError as exc:
        raise errors.ServiceUnavailable(f"Cannot find the image service: {exc}") from None


def check_image(image_id: str) -> dict[str, Any]:
    if not is_uuid(image_id):
        raise errors.BadRequest(f"Invalid imageRef provided: {image_id}.")
    url = f"{image_api_url()}/v2/images/{image_id}"
    try:
        response = requests.get(
            url, headers={"X-Auth-Token": request.headers.get("X-Auth-Token", "")}, timeout=10
        )
    except requests.RequestException as exc:
        raise errors.ServiceUnavailable(f"The image service did not answer: {exc}") from None
    if response.status_code == 404:
        raise errors.BadRequest(f"Image {image_id} could not be found.")
    if response.status_code != 200:
        raise errors.BadRequest(
            f"Image {image_id} cannot be used: the image service answered {response.status_code}."
        )
    image: dict[str, Any] = response.json()
    if image.get("status") != "active":
        raise errors.BadRequest(f"Image {image_id} is not active.")
    return image
