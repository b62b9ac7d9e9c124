"""Version discovery: ``GET /`` and ``GET /v2.1``. Only the base microversion 2.1 is offered, so
clients keep the base semantics (no ``networks: auto``, flavors by link)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from control.common.app import public

bp = Blueprint("compute_versions", __name__)

UPDATED = "2013-07-23T11:33:21Z"


def _entry() -> dict[str, Any]:
    return {
        "id": "v2.1",
        "status": "CURRENT",
        "version": "2.1",
        "min_version": "2.1",
        "updated": UPDATED,
        "links": [{"rel": "self", "href": f"{request.host_url.rstrip('/')}/v2.1/"}],
        "media-types": [
            {
                "base": "application/json",
                "type": "application/vnd.openstack.compute+json;version=2.1",
            }
        ],
    }


@bp.get("/")
@public
def root() -> Response:
    return jsonify({"versions": [_entry()]})


@bp.get("/v2.1")
@public
def v21() -> Response:
    return jsonify({"version": _entry()})
