"""Version discovery: ``GET /`` (300, as Glance), ``GET /versions`` and ``GET /v2``.

Glance lists every v2 minor version it still serves; clients pick the CURRENT one and follow its
self link (``http://host:9292/v2/``). There are no microversions in the image API.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from control.common.app import public

bp = Blueprint("image_versions", __name__)

CURRENT = "v2.9"
SUPPORTED = ("v2.8", "v2.7", "v2.6", "v2.5", "v2.4", "v2.3", "v2.2", "v2.1", "v2.0")


def _entry(version: str, status: str) -> dict[str, Any]:
    return {
        "id": version,
        "status": status,
        "links": [{"rel": "self", "href": f"{request.host_url.rstrip('/')}/v2/"}],
    }


def _versions() -> list[dict[str, Any]]:
    return [_entry(CURRENT, "CURRENT"), *(_entry(v, "SUPPORTED") for v in SUPPORTED)]


@bp.get("/")
@public
def root() -> Response:
    response = jsonify({"versions": _versions()})
    response.status_code = 300
    return response


@bp.get("/versions")
@public
def versions() -> Response:
    return jsonify({"versions": _versions()})


@bp.get("/v2")
@public
def v2() -> Response:
    return jsonify({"version": _entry(CURRENT, "CURRENT")})
