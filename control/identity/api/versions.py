"""Version discovery: ``GET /`` and ``GET /v3``."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from control.common.app import public

bp = Blueprint("identity_versions", __name__)

VERSION_ID = "v3.14"
UPDATED = "2020-04-07T00:00:00Z"


def _version() -> dict[str, Any]:
    return {
        "id": VERSION_ID,
        "status": "stable",
        "updated": UPDATED,
        "links": [{"rel": "self", "href": f"{request.host_url.rstrip('/')}/v3/"}],
        "media-types": [
            {"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}
        ],
    }


@bp.get("/")
@public
def root() -> Response:
    response = jsonify({"versions": {"values": [_version()]}})
    response.status_code = 300
    return response


@bp.get("/v3")
@public
def v3() -> Response:
    return jsonify({"version": _version()})
