"""Version discovery: ``GET /`` (300 Multiple Choices, as Cinder) and ``GET /v3/`` list the one
version ``v3.0``, CURRENT, with the microversion range ``min_version`` 3.0 .. ``version`` 3.0:
clients then keep Cinder's base semantics. No token is needed.

Microversions: a request may send ``OpenStack-API-Version: volume 3.0`` (or ``latest``, or none);
every answer echoes ``OpenStack-API-Version: volume 3.0`` with ``Vary``. Asking for more than 3.0
is 406, as Cinder answers a version above its maximum.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from control.common import errors
from control.common.app import public

bp = Blueprint("volume_versions", __name__)

MIN_VERSION = (3, 0)
MAX_VERSION = (3, 0)
HEADER = "OpenStack-API-Version"
UPDATED = "2017-02-25T12:00:00Z"

_VERSION = re.compile(r"^([1-9]\d*)\.([1-9]\d*|0)$")


def version_string(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def requested_version() -> tuple[int, int]:
    """The microversion asked for (``OpenStack-API-Version: volume X.Y``); base when none."""
    raw = ""
    for value in request.headers.getlist(HEADER):
        for item in value.split(","):
            service, _, version = item.strip().partition(" ")
            if service.lower() in ("volume", "block-storage"):
                raw = version.strip()
    if not raw:
        return MIN_VERSION
    if raw.lower() == "latest":
        return MAX_VERSION
    match = _VERSION.match(raw)
    if not match:
        raise errors.BadRequest(
            f"API Version String {raw} is of invalid format. Must be of format MajorNum.MinorNum."
        )
    asked = (int(match.group(1)), int(match.group(2)))
    if not MIN_VERSION <= asked <= MAX_VERSION:
        error = errors.APIError(
            f"Version {raw} is not supported by the API. Minimum is "
            f"{version_string(MIN_VERSION)} and maximum is {version_string(MAX_VERSION)}."
        )
        error.code = 406
        error.title = "Not Acceptable"
        raise error
    return asked


def check_version() -> None:
    """Before-request hook of the versioned API (``/v3/...``)."""
    if request.path.startswith("/v3/") and request.path.rstrip("/") != "/v3":
        g.volume_api_version = requested_version()


def echo_version(response: Response) -> Response:
    if request.path.startswith("/v3/") and request.path.rstrip("/") != "/v3":
        version = g.get("volume_api_version") or MIN_VERSION
        response.headers[HEADER] = f"volume {version_string(version)}"
        response.headers.add("Vary", HEADER)
    return response


def _root() -> str:
    return request.host_url.rstrip("/")


def _version() -> dict[str, Any]:
    return {
        "id": "v3.0",
        "status": "CURRENT",
        "version": version_string(MAX_VERSION),
        "min_version": version_string(MIN_VERSION),
        "updated": UPDATED,
        "links": [
            {"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
            {"rel": "self", "href": f"{_root()}/v3/"},
        ],
        "media-types": [
            {
                "base": "application/json",
                "type": "application/vnd.openstack.volume+json;version=3",
            }
        ],
    }


@bp.get("/")
@public
def root() -> Response:
    response = jsonify({"versions": [_version()]})
    response.status_code = 300
    return response


@bp.get("/v3")
@public
def v3() -> Response:
    return jsonify({"versions": [_version()]})
