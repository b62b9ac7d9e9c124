"""Version discovery: ``GET /`` lists v2.0 (CURRENT); ``GET /v2.0/`` lists the resources, as
Neutron (tempest ``network/test_versions.py``). No token is needed; there are no microversions.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from control.common.app import public

bp = Blueprint("network_versions", __name__)

RESOURCES = (
    ("network", "networks"),
    ("subnet", "subnets"),
    ("port", "ports"),
)


def _root() -> str:
    return request.host_url.rstrip("/")


def _version() -> dict[str, Any]:
    return {
        "id": "v2.0",
        "status": "CURRENT",
        "links": [{"rel": "self", "href": f"{_root()}/v2.0/"}],
    }


@bp.get("/")
@public
def root() -> Response:
    return jsonify({"versions": [_version()]})


@bp.get("/v2.0")
@public
def v2() -> Response:
    return jsonify(
        {
            "resources": [
                {
                    "name": name,
                    "collection": collection,
                    "links": [{"rel": "self", "href": f"{_root()}/v2.0/{collection}"}],
                }
                for name, collection in RESOURCES
            ]
        }
    )
