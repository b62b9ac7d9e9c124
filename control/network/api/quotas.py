"""Quotas: ``/v2.0/quotas`` (projects with limits of their own, admins), ``/v2.0/quotas/{project}``
(show, update, delete = back to defaults), ``.../default`` and ``.../details`` (limit, used,
reserved). Resources and defaults are Neutron's (``control/network/quota.py``)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response
from sqlalchemy import delete, select

from control.common import db
from control.common.app import no_content
from control.network import models, quota
from control.network.api import common
from control.network.api.common import enforce, respond

bp = Blueprint("network_quotas", __name__)

UPDATE = {
    "type": "object",
    "properties": {name: {"type": "integer", "minimum": -1} for name in quota.DEFAULT_QUOTAS},
    "additionalProperties": False,
}


def _target(project_id: str) -> dict[str, Any]:
    return {"project_id": project_id, "tenant_id": project_id}


def _with_project(values: dict[str, Any], project_id: str) -> dict[str, Any]:
    return {**values, "project_id": project_id, "tenant_id": project_id}


@bp.get("/v2.0/quotas")
def list_quotas() -> Response:
    enforce("get_quotas", {})
    sess = db.session()
    projects = sorted(set(sess.scalars(select(models.Quota.project_id))))
    defaults = common.settings().quota_defaults
    return respond(
        {
            "quotas": [
                _with_project(quota.limits(sess, project, defaults), project)
                for project in projects
            ]
        }
    )


@bp.get("/v2.0/quotas/<project_id>")
def show_quota(project_id: str) -> Response:
    enforce("get_quota", _target(project_id))
    limits = quota.limits(db.session(), project_id, common.settings().quota_defaults)
    return respond({"quota": limits})


@bp.get("/v2.0/quotas/<project_id>/default")
def show_default(project_id: str) -> Response:
    enforce("get_quota", _target(project_id))
    return respond({"quota": _with_project(dict(common.settings().quota_defaults), project_id)})


@bp.get("/v2.0/quotas/<project_id>/details")
def show_details(project_id: str) -> Response:
    enforce("get_quota", _target(project_id))
    sess = db.session()
    limits = quota.limits(sess, project_id, common.settings().quota_defaults)
    used = quota.usage(sess, project_id)
    return respond(
        {
            "quota": {
                name: {"limit": limit, "used": used.get(name, 0), "reserved": 0}
                for name, limit in limits.items()
            }
        }
    )


@bp.put("/v2.0/quotas/<project_id>")
def update_quota(project_id: str) -> Response:
    body = common.resource_body("quota", UPDATE)
    enforce("update_quota", _target(project_id))
    sess = db.session()
    for resource, limit in body.items():
        row = sess.get(models.Quota, (project_id, resource))
        if row is None:
            sess.add(models.Quota(project_id=project_id, resource=resource, limit=limit))
        else:
            row.limit = limit
    db.commit()
    return respond({"quota": quota.limits(sess, project_id, common.settings().quota_defaults)})


@bp.delete("/v2.0/quotas/<project_id>")
def delete_quota(project_id: str) -> Response:
    enforce("delete_quota", _target(project_id))
    db.session().execute(delete(models.Quota).where(models.Quota.project_id == project_id))
    db.commit()
    return no_content()
